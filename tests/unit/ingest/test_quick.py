"""An ingest with nothing to do (ingest/quick.py): the same report as the full run, and the full run at
the first doubt. Real store (embedded engine, docstore, MiniLM) in a temp folder, built once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.ingest.quick import MEMO_FILE, unchanged_report
from pipeline.ingest.run import Ingestor
from tests.conftest import ROOT

TEXT = (
    "AlexNet was trained on two NVIDIA GTX 580 GPUs for five to six days. The network was split across the two GPUs.\n\n"
    "Bitcoin mining uses a great deal of electricity. The difficulty adjusts every 2016 blocks.\n"
)
HEAVY = ("llama_index", "qdrant_client", "onnxruntime", "torch", "sqlalchemy")


def _settings(store: Path, **ingest: object) -> Settings:
    return Settings(store=store, llm={"provider": "none"}, ingest={"enrich": "later", **ingest})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two documents and a store of them (full run twice: the memo and file stats recorded)."""
    root = tmp_path_factory.mktemp("quick")
    docs = root / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(TEXT * 3, encoding="utf-8")
    (docs / "b.md").write_text(TEXT.upper() * 2, encoding="utf-8")
    (docs / "notes.csv").write_text("x,y\n", encoding="utf-8")  # unsupported: named as skipped by both paths
    settings = _settings(root / "store")
    assert Ingestor(settings).run([docs]).stats.files_added == 2
    shutil.copytree(docs, root / "pristine")
    return root


@pytest.fixture
def copy(built: Path, tmp_path: Path) -> Path:
    """A folder with ``store`` (a copy of the built one) and ``docs`` (a link to the built documents,
    whose paths are their doc ids: restored after the test)."""
    shutil.copytree(built / "store", tmp_path / "store")
    (tmp_path / "docs").symlink_to(built / "docs")
    yield tmp_path
    shutil.rmtree(built / "docs")
    shutil.copytree(built / "pristine", built / "docs")


def _same(quick: dict, full: dict) -> None:
    quick["stats"].pop("seconds"), full["stats"].pop("seconds")
    full["stats"].pop("store_seconds"), quick["stats"].pop("store_seconds")
    assert quick == full


def test_the_report_is_the_full_runs(copy: Path) -> None:
    settings = _settings(copy / "store")
    docs = (copy / "docs").resolve()
    os.utime(docs / "a.txt")  # a new mtime: the full run hashes it, finds the same bytes, records it as seen now
    assert unchanged_report(settings, [docs]) is None
    full = Ingestor(settings).run([docs]).model_dump(mode="json")
    assert full["stats"]["files_unchanged"] == 2 and full["stats"]["embedded_texts"] == 0
    quick = unchanged_report(settings, [docs])
    assert quick is not None
    _same(quick.model_dump(mode="json"), full)
    assert {f["status"] for f in full["files"]} == {"unchanged", "skipped"}


def _doubt(case: str, root: Path) -> tuple[Settings, list[Path], bool]:
    """Change one thing the full run would act on; (settings, paths, prune) to ask with."""
    settings, docs, prune = _settings(root / "store"), (root / "docs").resolve(), False
    if case == "bytes changed":
        (docs / "a.txt").write_text(TEXT * 4, encoding="utf-8")
    elif case == "new file":
        (docs / "c.txt").write_text(TEXT[::-1], encoding="utf-8")
    elif case == "settings changed":
        settings = _settings(root / "store", chunk_overlap=10)
    elif case == "file gone, --sync":
        (docs / "b.md").unlink()
        prune = True
    elif case == "no memo":
        (root / "store" / MEMO_FILE).unlink()
    elif case == "references missing":
        from pipeline.store import qdrant as qstore

        client = qstore.open_client(settings)
        try:
            name = qstore.names(settings)[next(iter(qstore.names(settings)))]
            some = [pid for pid, _ in qstore.scroll_payloads(client, name, [])][:1]
            qstore.delete_points(client, name, some)
        finally:
            client.close()
    elif case == "enrich now":
        settings = Settings(store=root / "store", llm={"provider": "none"}, ingest={"enrich": "now"})
    elif case == "store busy":  # another process holds the ingest lock (killed by the test)
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(120)",
             str(root / "store" / "ingest.lock")],
            stdout=subprocess.PIPE, text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        HOLDERS.append(holder)
    return settings, [docs], prune


HOLDERS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_holder_left() -> object:
    yield
    while HOLDERS:
        HOLDERS.pop().kill()


@pytest.mark.parametrize(
    "case", ["bytes changed", "new file", "settings changed", "file gone, --sync", "no memo", "references missing", "enrich now", "store busy"]
)
def test_any_doubt_takes_the_full_run(case: str, copy: Path) -> None:
    docs = (copy / "docs").resolve()
    Ingestor(_settings(copy / "store")).run([docs])  # the documents as they are now (restored by an earlier test)
    assert unchanged_report(_settings(copy / "store"), [docs], case == "file gone, --sync") is not None  # until the change
    settings, paths, prune = _doubt(case, copy)
    assert unchanged_report(settings, paths, prune) is None


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIPELINE_LLM__PROVIDER": "none", "PIPELINE_INGEST__ENRICH": "later"}
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)


def _imported(stderr: str) -> set[str]:
    lines = [line for line in stderr.splitlines() if line.startswith("import time:")]
    assert len(lines) > 100  # the log is there
    return {line.split("|")[-1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize("command", ["ingest", "status", "docs"])
def test_cron_commands_import_no_heavy_library(command: str, copy: Path) -> None:
    """What a scheduled job runs when nothing changed: no LlamaIndex, qdrant-client or ONNX runtime
    (issue 26: each cost a new process most of its start-up)."""
    store, docs = str(copy / "store"), (copy / "docs").resolve()
    Ingestor(_settings(copy / "store")).run([docs])  # the documents as they are now (restored by an earlier test)
    args = {
        "ingest": ["ingest", str(docs), "--store", store, "--json"],
        "status": ["status", "--store", store, "--json"],
        "docs": ["docs", "list", "--store", store, "--json"],
    }[command]
    proc = _python(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    if command == "ingest":
        assert out["stats"]["files_unchanged"] == 2 and out["stats"]["embedded_texts"] == 0
    imported = _imported(proc.stderr)
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
