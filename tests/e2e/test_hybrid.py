"""Hybrid retrieval end to end: BM25 vectors in embedded Qdrant, exact rare terms, stores from before hybrid."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from qdrant_client import models

from pipeline.config import Settings
from pipeline.providers import sparse
from pipeline.retrieve.engine import Engine
from pipeline.store.docstore import SELF_REFS
from tests.e2e.conftest import NO_LLM, copy_store, Run, run_cli, store_client

QUERY = "How does SciBERT differ from a BERT model pretrained on S2ORC?"
COLLECTIONS = ("docs_children", "docs_parents")

# Ten notes of the same shape; only the part number tells them apart, and dense vectors blur part numbers.
CODES = ["ZK-4417Q", "ZK-4714Q", "ZK-7441Q", "ZK-1447Q", "ZK-4471P", "ZK-4471R", "ZK-1744Q", "ZK-7414Q", "ZK-4147Q"]
NOTES = [f"The pump controller {code} reports the temperature of the cooling loop every minute." for code in CODES]
RARE = "The pump controller ZK-4471Q reports the temperature of the cooling loop every minute."


@pytest.fixture(scope="module")
def notes_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("notes")
    for i, text in enumerate(NOTES):
        (folder / f"note{i}.txt").write_text(text, encoding="utf-8")
    (folder / "pump.txt").write_text(RARE, encoding="utf-8")
    store = tmp_path_factory.mktemp("notes-store") / "store"
    run = run_cli("ingest", str(folder), "--store", str(store), "--json", env=NO_LLM)
    assert run.code == 0, run.stderr
    return store


def rank_of(answer, name: str) -> int | None:
    for rank, s in enumerate(answer.sources, start=1):
        if s.doc_id.endswith(name):
            return rank
    return None


@pytest.mark.e2e
def test_sparse_vectors_round_trip_through_embedded_qdrant(notes_store: Path) -> None:
    client = store_client(notes_store)
    try:
        info = client.get_collection("docs_parents")
        assert info.config.params.sparse_vectors["bm25"].modifier == models.Modifier.IDF
        points, _ = client.scroll("docs_parents", limit=100, with_payload=True, with_vectors=True)
        pump = next(p for p in points if p.payload["doc_id"].endswith("pump.txt"))
        stored = pump.vector["bm25"]
        assert list(stored.indices) == sparse.doc_vector(RARE)[0]
        assert list(stored.values) == pytest.approx(sparse.doc_vector(RARE)[1])
        assert len(pump.vector[""]) == 384  # the dense vector is still the unnamed one
    finally:
        client.close()


@pytest.mark.e2e
def test_hybrid_finds_an_exact_rare_term_that_dense_ranks_lower(notes_store: Path) -> None:
    with Engine(Settings(store=notes_store), load_llm=False) as engine:
        question = "Which rack holds pump controller ZK-4471Q?"
        dense = engine.retrieve(question, "chunk", 10, hybrid=False, rerank=False)
        hybrid = engine.retrieve(question, "chunk", 10, hybrid=True, rerank=False)
        engine.settings.retrieval.bm25_scope = "all"  # BM25 over the child chunks too
        wide = engine.retrieve(question, "chunk", 10, hybrid=True, rerank=False)
    assert hybrid.stats.stages == ["dense", "bm25-relative"]
    assert wide.stats.references_fetched > hybrid.stats.references_fetched > dense.stats.references_fetched
    assert rank_of(wide, "pump.txt") == 1
    assert rank_of(hybrid, "pump.txt") == 1
    assert rank_of(dense, "pump.txt") != 1, "dense alone already ranks it first: the test no longer shows the lexical lift"
    assert any(m.via == "bm25" or m.bm25_score is not None for m in hybrid.sources[0].matched)
    ids = [m.node_id for m in hybrid.sources[0].matched]
    assert len(ids) == len(set(ids))  # one entry per reference, however many searches found it


@pytest.fixture
def dense_only_store(any_store: tuple[Path, Run], tmp_path: Path) -> Path:
    """A copy of the sample store as written before hybrid search: no BM25 vector in any collection (and
    no self-reference index in the docstore, which came later still)."""
    original, _ = any_store
    store = tmp_path / "old"
    copy_store(original, store)
    client = store_client(store)
    try:
        for name in [c.name for c in client.get_collections().collections]:
            client.delete_vector_name(name, "bm25")
            assert not client.get_collection(name).config.params.sparse_vectors
    finally:
        client.close()
    with sqlite3.connect(store / "docstore.sqlite") as conn:
        assert conn.execute("DELETE FROM kv WHERE collection = ?", (SELF_REFS,)).rowcount > 0
    return store


@pytest.mark.e2e
def test_a_store_from_before_hybrid_answers_then_repair_adds_bm25_without_embedding(dense_only_store: Path) -> None:
    store = dense_only_store
    before = run_cli("query", QUERY, "--store", str(store), "--retrieve-only", "--json", env=NO_LLM)
    assert before.code == 0, before.stderr
    assert before.json["stats"]["stages"] == ["dense"] and before.json["sources"]
    status = run_cli("status", "--store", str(store), "--json", env=NO_LLM).json
    assert status["hybrid"].startswith("dense only") and set(status["points_without_bm25"]) >= set(COLLECTIONS)

    check = run_cli("check", "--store", str(store), "--json", env=NO_LLM)
    assert check.code != 0 and {"no-bm25", "no-self-ref-index"} <= {p["kind"] for p in check.json["problems"]}
    repair = run_cli("check", "--repair", "--store", str(store), "--json", env=NO_LLM)
    assert any("added BM25 vectors to" in line for line in repair.json["repaired"]), repair.stdout
    assert any(line.startswith("indexed the self-references of ") for line in repair.json["repaired"]), repair.stdout
    with sqlite3.connect(store / "docstore.sqlite") as conn:
        indexed = conn.execute("SELECT COUNT(*) FROM kv WHERE collection = ?", (SELF_REFS,)).fetchone()[0]
    assert indexed == status["parents"] > 0

    status = run_cli("status", "--store", str(store), "--json", env=NO_LLM).json
    assert status["hybrid"] == "ready" and status["points_without_bm25"] == {}
    after = run_cli("query", QUERY, "--store", str(store), "--retrieve-only", "--json", env=NO_LLM)
    assert after.code == 0 and after.json["stats"]["stages"] == ["dense", "bm25-relative"]
    assert after.json["stats"]["embedded_texts"] == 0
    assert run_cli("check", "--store", str(store), "--json", env=NO_LLM).code == 0


@pytest.mark.e2e
def test_a_store_keeps_the_model_it_was_built_with(tmp_path: Path) -> None:
    """Built with bge-small; later commands without the setting use bge-small; naming another fails with both."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "pump.txt").write_text(RARE, encoding="utf-8")
    store = tmp_path / "store"
    built = run_cli("ingest", str(folder), "--store", str(store), "--json", env={**NO_LLM, "PIPELINE_EMBED__MODEL": "bge-small"})
    assert built.code == 0, built.stderr
    (folder / "note.txt").write_text(NOTES[0], encoding="utf-8")
    more = run_cli("ingest", str(folder), "--store", str(store), "--json", env=NO_LLM)  # no model named: the store's
    assert more.code == 0, more.stderr
    status = run_cli("status", "--store", str(store), "--json", env=NO_LLM).json
    assert status["embed_model"] == "bge-small-en-v1.5-int8" and status["documents"] == 2
    query = run_cli("query", "pump controller ZK-4471Q", "--store", str(store), "--retrieve-only", "--json", env=NO_LLM)
    assert query.code == 0 and query.json["sources"][0]["doc_id"].endswith("pump.txt")
    other = run_cli("query", "pump", "--store", str(store), "--retrieve-only", "--json", env={**NO_LLM, "PIPELINE_EMBED__MODEL": "minilm"})
    assert other.code == 2
    assert "bge-small-en-v1.5-int8" in other.stdout + other.stderr and "all-MiniLM-L6-v2-int8" in other.stdout + other.stderr
