"""Faults during ingestion: LLM down, docstore unwritable. Bounded retries, clear errors, nothing partial."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import StoreUnavailable
from pipeline.ingest.run import Ingestor
from pipeline.store.docstore import ParentStore
from tests.e2e.conftest import NO_LLM, run_cli
from tests.e2e.pdfs import page_text, write_pdf

pytestmark = pytest.mark.e2e


def test_llm_unreachable_fails_the_file_cleanly_and_next_run_retries(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "docs" / "a.pdf", [page_text("a0")])
    store = tmp_path / "store"
    down = {"PIPELINE_LLM__PROVIDER": "openai", "PIPELINE_LLM__API_BASE": "http://127.0.0.1:9/v1", "PIPELINE_LLM__TIMEOUT": "2"}
    run = run_cli("ingest", str(pdf), "--store", str(store), "--json", env=down)
    assert run.code == 1, run.stderr
    (result,) = run.json["files"]
    assert result["status"] == "failed" and "LLM failed after 3 attempts" in result["reason"]
    status = run_cli("status", "--json", "--store", str(store)).json
    assert status["parents"] == 0 and sum(status["collections"].values()) == 0  # nothing partial
    assert pdf.resolve().as_posix() in status["failed_documents"]
    retry = run_cli("ingest", str(pdf), "--store", str(store), "--json", env=NO_LLM)
    assert retry.code == 0 and retry.json["stats"]["files_added"] == 1
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
