"""Scheduled ingestion: incremental sync, crash safety, one writer, hostile input — real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.store.docstore import ParentStore
from tests.conftest import ROOT, shared_path
from tests.e2e.conftest import BACKENDS, NO_LLM, backend_env, copy_store, killed_at, referenced_parents, run_cli, store_client
from tests.e2e.conftest import store_snapshot as snapshot
from tests.e2e.pdfs import page_text, write_pdf

pytestmark = pytest.mark.e2e

PAGES = [page_text(f"p{i}") for i in range(10)]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    write_pdf(folder / "long.pdf", PAGES)
    write_pdf(folder / "short.pdf", [page_text("s0"), page_text("s1")])
    return folder


def ingest(store: Path, *paths: Path | str, env: dict[str, str] | None = None, **kw: Any) -> Any:
    args = ["ingest", *map(str, paths), "--store", str(store), "--json", *kw.get("extra", [])]
    return run_cli(*args, env={**NO_LLM, **(env or {})})


class TestIncrementalSync:
    def test_one_changed_page_redoes_only_its_parents(self, corpus: Path, tmp_path: Path) -> None:
        store = tmp_path / "store"
        first = ingest(store, corpus)
        assert first.code == 0, first.stderr
        before = snapshot(store)
        write_pdf(corpus / "long.pdf", [*PAGES[:8], page_text("changed"), PAGES[9]])
        second = ingest(store, corpus)
        stats = second.json["stats"]
        assert stats["files_updated"] == 1 and stats["files_unchanged"] == 1
        total = stats["parents_rebuilt"] + stats["parents_reused"]
        assert 1 <= stats["parents_rebuilt"] <= 3 < stats["parents_reused"] == total - stats["parents_rebuilt"]
        assert 0 < stats["embedded_texts"] < first.json["stats"]["embedded_texts"] / 2
        after = snapshot(store)
        gone = before["parents"] - after["parents"]
        assert gone and not (gone & referenced_parents(after))  # no stale reference anywhere
        assert referenced_parents(after) == after["parents"]
        assert run_cli("check", "--store", str(store)).code == 0

    def test_sync_purges_deleted_files_plain_ingest_never_deletes(self, corpus: Path, tmp_path: Path) -> None:
        store = tmp_path / "store"
        assert ingest(store, corpus).code == 0
        short_parents = set(snapshot(store)["ledger"][(corpus / "short.pdf").resolve().as_posix()]["parents"])
        (corpus / "short.pdf").unlink()
        plain = ingest(store, corpus)
        assert plain.json["stats"]["files_removed"] == 0 and short_parents <= snapshot(store)["parents"]
        dry = run_cli("ingest", str(corpus), "--sync", "--dry-run", "--json", "--store", str(store), env=NO_LLM)
        assert dry.json["counts"] == {"remove": 1, "unchanged": 1}
        assert short_parents <= snapshot(store)["parents"]  # dry run changed nothing
        synced = ingest(store, corpus, extra=["--sync"])
        assert synced.json["stats"]["files_removed"] == 1
        after = snapshot(store)
        assert not (short_parents & after["parents"]) and not (short_parents & referenced_parents(after))
        assert (corpus / "short.pdf").resolve().as_posix() not in after["ledger"]

    def test_dry_run_reports_changes_without_writing(self, corpus: Path, tmp_path: Path) -> None:
        store = tmp_path / "store"
        assert ingest(store, corpus / "long.pdf").code == 0
        write_pdf(corpus / "long.pdf", [*PAGES[:8], page_text("changed"), PAGES[9]])
        before = snapshot(store)
        dry = run_cli("ingest", str(corpus), "--dry-run", "--json", "--store", str(store), env=NO_LLM)
        assert dry.code == 0
        actions = {Path(f["path"]).name: f for f in dry.json["files"]}
        assert actions["short.pdf"]["action"] == "add" and actions["long.pdf"]["action"] == "update"
        assert 1 <= actions["long.pdf"]["parents_new"] <= 3 and actions["long.pdf"]["parents_kept"] >= 3
        assert snapshot(store) == before


@pytest.fixture(scope="module")
def crash_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One corpus path for every crash step, so the first ingest and the uninterrupted reference run
    (document ids are paths) are made once and each step starts from a copy: 2 ingests, not 8."""
    base = tmp_path_factory.mktemp("crash")
    corpus, templates = base / "docs", base / "templates"
    write_pdf(templates / "long.pdf", PAGES)
    write_pdf(templates / "short.pdf", [page_text("s0"), page_text("s1")])
    write_pdf(templates / "long-changed.pdf", [*PAGES[:8], page_text("changed"), PAGES[9]])
    corpus.mkdir()
    for name in ("long.pdf", "short.pdf"):
        shutil.copy2(templates / name, corpus / name)
    initial = base / "initial"
    assert ingest(initial, corpus).code == 0
    shutil.copy2(templates / "long-changed.pdf", corpus / "long.pdf")
    reference = base / "reference"
    assert ingest(reference, corpus).code == 0
    return {"corpus": corpus, "templates": templates, "initial": initial, "reference": snapshot(reference)}


@pytest.mark.parametrize("step", ["after-intent", "after-parents", "after-children", "after-delete-refs"])
def test_sigkill_at_any_step_then_rerun_converges(step: str, crash_case: dict[str, Any], tmp_path: Path) -> None:
    corpus, templates = crash_case["corpus"], crash_case["templates"]
    store = tmp_path / "store"
    copy_store(crash_case["initial"], store)  # the first ingest of the unchanged corpus
    shutil.copy2(templates / "long-changed.pdf", corpus / "long.pdf")
    killed_at(step, ["ingest", str(corpus), "--store", str(store)], NO_LLM, tmp_path)
    interrupted = snapshot(store)
    # Whatever a reader sees mid-crash points at parents that exist.
    assert referenced_parents(interrupted) <= interrupted["parents"]
    rerun = ingest(store, corpus)
    assert rerun.code == 0, rerun.stderr
    assert run_cli("check", "--store", str(store)).code == 0
    got, want = snapshot(store), crash_case["reference"]
    assert got["points"] == want["points"] and got["parents"] == want["parents"]
    assert got["ledger"] == want["ledger"]


class TestOneWriter:
    def test_second_ingest_gets_a_clear_lock_error(self, corpus: Path, tmp_path: Path) -> None:
        store = tmp_path / "store"
        store.mkdir()
        from filelock import FileLock

        with FileLock(str(store / "ingest.lock")):  # as a running ingest holds it
            busy = ingest(store, corpus)
            assert busy.code == 2 and "another ingest is writing" in busy.stderr
            assert busy.json["error"]["type"] == "StoreLocked"  # --json: one error object on stdout
            waited = ingest(store, corpus, extra=["--lock-timeout", "1"])
            assert waited.code == 2
        assert ingest(store, corpus).code == 0

    def test_two_real_processes_one_writes(self, corpus: Path, tmp_path: Path) -> None:
        store = tmp_path / "store"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_"))}
        env.update(NO_LLM, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"))
        cmd = [sys.executable, "-m", "pipeline", "ingest", str(corpus), "--store", str(store)]
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        codes = sorted(code for code, _ in results)
        assert codes in ([0, 0], [0, 2])
        if codes == [0, 2]:
            assert any("another ingest is writing" in e or "open in another process" in e for _, e in results)
        assert run_cli("check", "--store", str(store)).code == 0

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_embedded_store_open_in_a_service(self, corpus: Path, tmp_path: Path, backend: str) -> None:
        store = tmp_path / "store"
        assert ingest(store, corpus / "short.pdf", env=backend_env(backend)).code == 0
        holder = store_client(store)  # as `pipeline serve` would hold it
        try:
            run = ingest(store, corpus)
            assert run.code == 2 and "open in another process" in run.stderr and "POST /ingest" in run.stderr
        finally:
            holder.close()


class TestBadInput:
    def test_hostile_files_fail_one_line_each_and_the_rest_lands(self, tmp_path: Path) -> None:
        hostile = shared_path("corpus", "hostile")
        store = tmp_path / "store"
        good = write_pdf(tmp_path / "good" / "good.pdf", [page_text("g0")])
        assert ingest(store, good).code == 0
        before = snapshot(store)
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "empty.pdf").write_bytes(b"")
        (bad / "text.pdf").write_bytes(b"PK\x03\x04 this is a zip, not a PDF")
        empty_folder = tmp_path / "nothing"
        empty_folder.mkdir()
        other = write_pdf(tmp_path / "other" / "other.pdf", [page_text("o0")])  # a good file among the bad ones
        run = ingest(store, hostile, bad, empty_folder, other)
        assert run.code == 1, run.stderr
        failed = {Path(f["path"]).name: f["reason"] for f in run.json["files"] if f["status"] == "failed"}
        assert failed.keys() == {
            "no_text_layer_image_only_17p.pdf", "blank_100_pages.pdf", "encrypted_aes256_userpw_foo.pdf",
            "encrypted_aes256_r6_userpw_usersecret.pdf", "encrypted_rc4_40_userpw_foo.pdf",
            "malformed_circular_xobjects_no_startxref.pdf", "empty.pdf", "text.pdf", "nothing",
        }
        assert failed["nothing"] == f"no supported files found under {empty_folder} (empty)"
        assert "image-only or blank" in failed["no_text_layer_image_only_17p.pdf"] and "OCR" in failed["blank_100_pages.pdf"]
        assert "encrypted" in failed["encrypted_rc4_40_userpw_foo.pdf"] and "pdf_passwords" in failed["encrypted_rc4_40_userpw_foo.pdf"].lower()
        assert "malformed" in failed["malformed_circular_xobjects_no_startxref.pdf"]
        assert "empty file" in failed["empty.pdf"] and "not a PDF" in failed["text.pdf"]
        for name in failed:  # one line per bad file on stderr, naming it
            assert sum(name in line for line in run.stderr.splitlines() if line.startswith("failed")) == 1
        stats = run.json["stats"]
        assert stats["files_added"] == 2 and stats["files_failed"] == 9  # other.pdf + corrupted-but-readable stream
        after = snapshot(store)
        good_id = good.resolve().as_posix()
        assert after["ledger"][good_id] == before["ledger"][good_id]
        for name, pts in before["points"].items():
            assert pts <= after["points"][name]  # nothing earlier was touched

    def test_passwords_from_config(self, tmp_path: Path) -> None:
        hostile = shared_path("corpus", "hostile")
        env = {"PIPELINE_INGEST__PDF_PASSWORDS": '{"encrypted_rc4_40_userpw_foo.pdf": "foo"}'}
        run = ingest(tmp_path / "store", hostile / "encrypted_rc4_40_userpw_foo.pdf", env=env)
        assert run.code == 0 and run.json["stats"]["files_added"] == 1


class TestCheck:
    def test_detects_and_repairs_damage(self, corpus: Path, tmp_path: Path) -> None:
        store = tmp_path / "store"
        assert ingest(store, corpus).code == 0
        snap = snapshot(store)
        victim = sorted(snap["parents"])[0]
        parents = ParentStore(store / "docstore.sqlite")
        parents.delete([victim])  # damage: references now dangle
        parents.close()
        from llama_index.core.schema import IndexNode
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        client = store_client(store)
        orphan = IndexNode(id_="00000000-0000-5000-8000-000000000001", text="stray", index_id="nowhere",
                           metadata={"kind": "chunk-128", "parent_id": "nowhere", "doc_id": "/gone.pdf"}, embedding=[0.1] * 384)
        QdrantVectorStore(collection_name="docs_children", client=client).add([orphan])
        client.close()

        bad = run_cli("check", "--json", "--store", str(store))
        assert bad.code == 1
        kinds = {p["kind"] for p in bad.json["problems"]}
        assert {"dangling-reference", "missing-parent", "orphan-reference"} <= kinds
        fixed = run_cli("check", "--repair", "--json", "--store", str(store))
        assert any("whose parents are in no docstore" in r for r in fixed.json["repaired"])
        assert any("marked" in r for r in fixed.json["repaired"])
        rebuilt = ingest(store, corpus)
        assert rebuilt.code == 0 and rebuilt.json["stats"]["files_updated"] == 1
        assert rebuilt.json["stats"]["embedded_texts"] == 0  # rebuilt from the cache
        assert run_cli("check", "--store", str(store)).code == 0
        assert snapshot(store)["parents"] == snap["parents"]


def test_scheduled_ingest_script_syncs(corpus: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_"))}
    env.update(NO_LLM, PIPELINE_STORE=str(tmp_path / "store"), PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"),
               PIPELINE_LOG_FILE=str(tmp_path / "log.jsonl"))
    script = [sys.executable, str(ROOT / "scripts" / "scheduled_ingest.py"), str(corpus)]
    assert subprocess.run(script, cwd=ROOT, env=env, capture_output=True).returncode == 0
    (corpus / "short.pdf").unlink()
    assert subprocess.run(script, cwd=ROOT, env=env, capture_output=True).returncode == 0
    status = run_cli("status", "--json", "--store", str(tmp_path / "store")).json
    assert status["documents"] == 1
    import json

    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records and all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
