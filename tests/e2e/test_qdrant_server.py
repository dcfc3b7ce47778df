"""The same flow against a Qdrant server in a container (testcontainers, pinned image)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, run_cli

pytestmark = [pytest.mark.e2e]


@pytest.mark.docker
def test_ingest_and_query_against_server(qdrant_url: str, tmp_path: Path) -> None:
    env = {**NO_LLM, "QDRANT_URL": qdrant_url, "PIPELINE_QDRANT__PREFIX": "e2e"}
    store = tmp_path / "store"
    first = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=env)
    assert first.code == 0, first.stderr
    assert first.json["stats"]["parents"] == 20
    query = run_cli("query", "What is S2ORC?", "--retrieve-only", "--json", "--store", str(store), env=env)
    assert query.code == 0, query.stderr
    assert query.json["stats"]["embedded_texts"] == 0 and query.json["sources"]
    assert query.json["stats"]["stages"] == ["dense", "bm25-relative"]  # BM25 with Qdrant's IDF on the server too
    reranked = run_cli("query", "What is S2ORC?", "--retrieve-only", "--rerank", "--json", "--store", str(store), env=env)
    assert reranked.code == 0 and reranked.json["stats"]["stages"][-1] == "rerank"
    again = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=env)
    assert again.json["stats"]["embedded_texts"] == 0
    status = run_cli("status", "--json", "--store", str(store), env=env).json
    assert status["collections"]["e2e_children"] == 343 and status["collections"]["e2e_parents"] == 20
    assert status["hybrid"] == "ready"
    assert not (store / "qdrant").exists()  # nothing embedded: the server holds the vectors


def test_unreachable_server_is_a_clear_fatal_error(tmp_path: Path) -> None:
    """Runs without Docker too: a closed port, retried, then exit 2 naming the cause."""
    env = {**NO_LLM, "QDRANT_URL": "http://127.0.0.1:9", "PIPELINE_QDRANT__TIMEOUT": "1"}
    run = run_cli("ingest", str(SAMPLE_PDF), "--store", str(tmp_path / "s"), "--json", env=env)
    assert run.code == 2
    assert "StoreUnavailable" in run.stderr and "unreachable" in run.stderr
    assert run.json["error"]["type"] == "StoreUnavailable"  # --json: one error object on stdout, no traceback


@pytest.mark.docker
def test_a_server_store_from_before_hybrid_gets_bm25_by_repair(qdrant_url: str, tmp_path: Path) -> None:
    """Server ≥ 1.18 adds the BM25 vector to existing collections (create-vector-name); no re-embedding."""
    from qdrant_client import QdrantClient

    env = {**NO_LLM, "QDRANT_URL": qdrant_url, "PIPELINE_QDRANT__PREFIX": "old"}
    store = tmp_path / "store"
    assert run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=env).code == 0
    client = QdrantClient(url=qdrant_url)
    for name in ("old_children", "old_parents", "old_summaries", "old_questions"):
        client.delete_vector_name(name, "bm25")
    client.close()
    before = run_cli("query", "What is S2ORC?", "--retrieve-only", "--json", "--store", str(store), env=env)
    assert before.code == 0 and before.json["stats"]["stages"] == ["dense"]
    repair = run_cli("check", "--repair", "--json", "--store", str(store), env=env)
    assert any("added BM25 vectors" in line for line in repair.json["repaired"])
    after = run_cli("query", "What is S2ORC?", "--retrieve-only", "--json", "--store", str(store), env=env)
    assert after.json["stats"]["stages"] == ["dense", "bm25-relative"] and after.json["stats"]["embedded_texts"] == 0
