"""Two-phase ingest with real processes: searchable first, enriched after, resumable after SIGKILL.

A 3-page PDF gives 2 parents, so the SmolLM2 part stays short (a few calls of at most 128 tokens).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import run_cli
from tests.e2e.pdfs import page_text, write_pdf

pytestmark = pytest.mark.e2e

SMALL_LLM = {"PIPELINE_LLM__PROVIDER": "llamacpp", "PIPELINE_LLM__MAX_TOKENS": "128"}
FACT = "The Quillmoor ferry carries exactly 417 bicycles across Lake Vantor every morning."


@pytest.fixture()
def small_pdf(tmp_path: Path) -> Path:
    pages = [page_text(f"e{i}") for i in range(3)]
    pages[2] = FACT + " " + pages[2]
    return write_pdf(tmp_path / "docs" / "ferry.pdf", pages)


@pytest.mark.llm
def test_searchable_before_enrichment_and_resumed_after_sigkill(small_pdf: Path, tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    store = tmp_path / "store"
    marker = tmp_path / "enriched-one"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    env.update(SMALL_LLM, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"), PIPELINE_FAULT_PAUSE=f"after-enrich-parent:{marker}")
    # Phase 1 then phase 2 in one `ingest`; the process stops after the first enriched parent and is killed.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ingest", str(small_pdf), "--store", str(store), "--enrich", "now"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "enrichment never finished a parent"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)

    # The document was searchable before its enrichment finished, and the kill lost nothing of it.
    found = run_cli("query", "How many bicycles does the Quillmoor ferry carry?", "--retrieve-only", "--json", "--store", str(store), env={"PIPELINE_LLM__PROVIDER": "none"})
    assert found.code == 0, found.stderr
    assert FACT in found.json["sources"][0]["text"]
    status = run_cli("status", "--json", "--store", str(store)).json
    n = status["parents"]
    assert n >= 2 and status["enriched_parents"] == 1
    assert status["collections"]["docs_summaries"] == 1

    # `enrich` resumes: the finished parent is skipped, only the others cost LLM calls
    # (per parent: a summary, the questions, at most one retry for missing questions).
    resumed = run_cli("enrich", "--store", str(store), "--json", env=SMALL_LLM)
    assert resumed.code == 0, resumed.stderr
    stats = resumed.json["stats"]
    assert stats["parents_enriched"] == n - 1 and stats["parents_unenriched"] == 0
    assert 2 * (n - 1) <= stats["llm_calls"] <= 3 * (n - 1)
    assert stats["summaries"] == n - 1 and stats["questions"] >= n - 1
    status = run_cli("status", "--json", "--store", str(store)).json
    assert status["enriched_parents"] == n and status["pending_documents"] == []
    assert status["collections"]["docs_summaries"] == n

    # Idempotent: nothing left to do, and the store checks out.
    again = run_cli("enrich", "--store", str(store), "--json", env=SMALL_LLM)
    assert again.json["stats"]["llm_calls"] == 0 and again.json["stats"]["parents_enriched"] == 0
    check = run_cli("check", "--json", "--store", str(store))
    assert check.code == 0 and check.json["ok"], check.stdout


def test_enrich_later_leaves_the_llm_alone_and_status_says_so(small_pdf: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run = run_cli("ingest", str(small_pdf), "--store", str(store), "--enrich", "later", "--json", env=SMALL_LLM)
    assert run.code == 0, run.stderr
    stats = run.json["stats"]
    assert stats["llm_calls"] == 0 and stats["enrich"] == "later" and stats["parents_unenriched"] == stats["parents"] >= 2
    assert set(stats["references"]) == {"chunk-128", "chunk-256", "chunk-512", "parent"}
    human = run_cli("ingest", str(small_pdf), "--store", str(store), "--enrich", "later", env=SMALL_LLM)
    assert "pipeline enrich" in human.stderr
    assert run_cli("status", "--json", "--store", str(store)).json["enriched_parents"] == 0


def test_default_with_smollm2_does_not_wait_for_it(small_pdf: Path, tmp_path: Path) -> None:
    """ingest.enrich=auto: SmolLM2's summaries and questions do not help retrieval, so none are written."""
    run = run_cli("ingest", str(small_pdf), "--store", str(tmp_path / "store"), "--json", env={"PIPELINE_LLM__PROVIDER": "llamacpp"})
    assert run.code == 0, run.stderr
    assert run.json["stats"]["llm_calls"] == 0 and run.json["stats"]["enrich"] == "skipped"
