"""Faults: LLM down, docstore unwritable, docstore truncated, disk full. Bounded retries, one clear error, nothing partial."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import StoreUnavailable
from pipeline.ingest.run import Ingestor
from pipeline.store.docstore import ParentStore
from tests.e2e.conftest import NO_LLM, copy_store, Run, run_cli
from tests.e2e.pdfs import page_text, write_pdf

pytestmark = pytest.mark.e2e


def test_llm_unreachable_leaves_the_document_searchable_and_unenriched(tmp_path: Path) -> None:
    """The LLM only serves the second phase: with it down the document still lands (searchable), its
    parent is left without summary and questions (nothing partial), and `enrich` is what retries."""
    pdf = write_pdf(tmp_path / "docs" / "a.pdf", [page_text("a0")])
    store = tmp_path / "store"
    down = {"PIPELINE_LLM__PROVIDER": "openai", "PIPELINE_LLM__API_BASE": "http://127.0.0.1:9/v1", "PIPELINE_LLM__TIMEOUT": "2"}
    run = run_cli("ingest", str(pdf), "--store", str(store), "--json", env=down)
    assert run.code == 0, run.stderr
    (result,) = run.json["files"]
    assert result["status"] == "added" and "LLM failed after 3 attempts" in run.stderr
    assert run.json["stats"]["parents_enriched"] == 0 and run.json["stats"]["parents_unenriched"] == 1
    status = run_cli("status", "--json", "--store", str(store)).json
    assert status["parents"] == 1 and status["enriched_parents"] == 0 and status["pending_documents"] == []
    assert status["collections"]["docs_summaries"] == status["collections"]["docs_questions"] == 0  # nothing partial
    found = run_cli("query", "Section a0", "--retrieve-only", "--json", "--store", str(store), env=NO_LLM)
    assert found.code == 0 and found.json["sources"], found.stderr
    assert run_cli("status", "--json", "--store", str(store)).json["failed_documents"] == {}


def test_docstore_write_failure_is_fatal_and_leaves_the_store_consistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    first = write_pdf(docs / "first.pdf", [page_text("f0")])
    settings = Settings(store=tmp_path / "store", llm={"provider": "none"}, ingest={"enrich": False})
    assert Ingestor(settings).run([first]).stats.files_added == 1
    second = write_pdf(docs / "second.pdf", [page_text("s0")])

    def disk_full(self: ParentStore, parents: object) -> None:  # a full disk cannot be caused here
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as m:
        m.setattr(ParentStore, "put", disk_full)
        with pytest.raises(StoreUnavailable, match="disk is full"):
            Ingestor(settings).run([docs])
    # The interrupted document is pending; the next run finishes it and check is clean.
    report = Ingestor(settings).run([docs])
    assert report.stats.files_unchanged == 1 and report.stats.files_added == 1
    assert run_cli("check", "--store", str(settings.store)).code == 0
    assert second.exists()


# --- Injected faults through the CLI: a damaged docstore and a full disk. One store is built per module
# (two small text files, no LLM) and copied per test.

WORDS = ["alpha", "river", "stone", "copper", "violin", "ferry", "lake", "guild", "north", "paper"]


def words(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 999)) for _ in range(n))


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(docs folder, store) with two text documents ingested without an LLM."""
    base = tmp_path_factory.mktemp("faults")
    docs = base / "docs"
    docs.mkdir()
    for i in range(2):
        (docs / f"d{i}.txt").write_text(words(i, 700))
    settings = Settings(store=base / "store", llm={"provider": "none"}, ingest={"enrich": False})
    assert Ingestor(settings).run([docs]).stats.files_added == 2
    return docs, settings.store


def error_of(run: Run) -> dict[str, str]:
    """The ``{"error": {...}}`` object a --json command prints on a fatal error (and nothing else on stdout)."""
    assert run.code == 2, (run.code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    return json.loads(run.stdout)["error"]


def test_truncated_docstore_is_diagnosed_and_check_repair_rebuilds(small_store: tuple[Path, Path], tmp_path: Path) -> None:
    docs, built = small_store
    store = copy_store(built, tmp_path / "store")
    docstore = store / "docstore.sqlite"
    os.truncate(docstore, docstore.stat().st_size // 2)

    error = error_of(run_cli("status", "--json", "--store", str(store)))
    assert error["type"] == "StoreDamaged" and str(docstore) in error["message"] and "check --repair" in error["message"]
    error = error_of(run_cli("query", "copper violin", "--retrieve-only", "--json", "--store", str(store), env=NO_LLM))
    assert error["type"] == "StoreDamaged"

    diagnosed = run_cli("check", "--store", str(store))
    assert diagnosed.code == 1 and "damaged-docstore" in diagnosed.stderr and "Traceback" not in diagnosed.stderr
    repaired = run_cli("check", "--repair", "--json", "--store", str(store))
    assert repaired.code == 0, repaired.stderr
    assert any(r.startswith("moved the damaged docstore to docstore.sqlite.damaged-") for r in repaired.json["repaired"])
    again_line = next(r for r in repaired.json["repaired"] if r.startswith("ingest these 2 documents again"))
    assert all(str((docs / f"d{i}.txt").resolve()) in again_line for i in range(2))

    # What the docstore held is rebuilt by ingesting again; the cache makes it free of embedding calls.
    settings = Settings(store=store, llm={"provider": "none"}, ingest={"enrich": False})
    again = Ingestor(settings).run([docs])
    assert again.stats.files_added == 2 and again.stats.embedded_texts == 0
    assert run_cli("check", "--store", str(store)).code == 0


@contextmanager
def small_disk(size_kb: int, where: Path) -> Iterator[Callable[[int], None]]:
    """A tmpfs of ``size_kb`` mounted at ``where``; yields a function that resizes it. Skips the test
    with the reason when no tmpfs can be mounted (not root, no CAP_SYS_ADMIN)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.strip() or mounted.returncode}")

    def resize(kb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kb}k", str(where)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_disk_full_during_ingest_is_one_json_error_and_the_store_stays_consistent(small_store: tuple[Path, Path], tmp_path: Path) -> None:
    _, built = small_store
    # The edge engine preallocates sparse files (32 MB WAL segments and mmap pages holding a few KB) and
    # maps them populated, which on tmpfs turns holes into pages: so the disk is first sized by the
    # store's apparent size, the store opened once, then the disk shrunk to what it really uses + 200 KB.
    apparent_kb = sum(f.stat().st_size for f in built.rglob("*") if f.is_file()) // 1024
    new = tmp_path / "new"
    new.mkdir()
    (new / "big.txt").write_text(words(7, 3000))  # its cache entries and references need more than 200 KB
    with small_disk(apparent_kb + 64_000, tmp_path / "disk") as resize:
        store = tmp_path / "disk" / "store"
        subprocess.run(["cp", "-a", "--sparse=always", str(built), str(store)], check=True)
        assert run_cli("status", "--json", "--store", str(store)).code == 0
        used_kb = int(subprocess.run(["du", "-sk", str(tmp_path / "disk")], capture_output=True, text=True, check=True).stdout.split()[0])
        resize(used_kb + 200)
        full = run_cli("ingest", str(new), "--json", "--store", str(store), env=NO_LLM)
        error = error_of(full)
        assert error["type"] == "DiskFull", error
        assert str(store) in error["message"] and "free disk space" in error["message"]

        resize(used_kb + 64_000)  # space freed: the next run finishes, and the store is consistent
        again = run_cli("ingest", str(new), "--json", "--store", str(store), env=NO_LLM)
        assert again.code == 0, again.stderr
        assert again.json["stats"]["files_added"] == 1
        assert run_cli("check", "--store", str(store)).code == 0


HOLD = """
import sys, time
from pathlib import Path
store = Path(sys.argv[1])
if sys.argv[2] == "qdrant":
    from pipeline.config import Settings
    from pipeline.store.qdrant import open_client
    held = open_client(Settings(store=store))  # the store's embedded Qdrant, as `pipeline serve` holds it
else:
    from filelock import FileLock
    held = FileLock(str(store / "ingest.lock")); held.acquire()
print("holding", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize(("lock", "command", "hint"), [("qdrant", "status", "open in another process"), ("ingest", "check", "holds its ingest lock")])
def test_lock_hint_names_the_process_that_holds_the_store(small_store: tuple[Path, Path], tmp_path: Path, lock: str, command: str, hint: str) -> None:
    _, built = small_store
    store = copy_store(built, tmp_path / "store")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store), lock], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        error = error_of(run_cli(command, "--json", "--store", str(store)))
    finally:
        holder.kill()
        holder.wait()
    assert error["type"] == "StoreLocked" and hint in error["message"]
    assert f"Held by pid {holder.pid}: {sys.executable} -c" in error["message"]
    assert "a running `pipeline serve`?" not in error["message"]  # no guess when the holder is known
    if command == "status":  # the advice fits the command: ask the service, not "POST /ingest"
        assert "GET /status" in error["message"] and "POST /ingest" not in error["message"]
