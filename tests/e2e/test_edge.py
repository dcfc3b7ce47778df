"""The embedded engine (edge) end to end: a local-mode store migrated without re-embedding, and the
service querying from 8 threads while it ingests, without the read/write lock local mode needs."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from pipeline.service.deps import ServiceState
from pipeline.store.local_mode import SerializedClient
from pipeline.service.app import create_app
from tests.conftest import SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, copy_store, Run, run_cli, wait_for_job
from tests.e2e.test_service import NO_LLM_SETTINGS, S2ORC_QUESTION, make_pdf, serve_in_thread

pytestmark = pytest.mark.e2e

QUESTIONS = ["How was S2ORC built?", "How does SciBERT differ from a BERT model pretrained on S2ORC?"]


def sources(store: Path, question: str, mode: str) -> list[tuple[str, float]]:
    run = run_cli("query", question, "--store", str(store), "--mode", mode, "--top-k", "5", "--retrieve-only", "--json", env=NO_LLM)
    assert run.code == 0, run.stderr
    return [(s["parent_id"], s["score"]) for s in run.json["sources"]]


def test_migrate_a_local_store_to_edge_keeps_parents_and_scores(local_plain_store: tuple[Path, Run], tmp_path: Path) -> None:
    store = copy_store(local_plain_store[0], tmp_path / "store")
    assert not (store / "edge").exists()
    before = run_cli("status", "--json", "--store", str(store)).json
    assert before["backend"] == "local" and "migrate --to edge" in before["backend_note"]
    wanted = {(q, m): sources(store, q, m) for q in QUESTIONS for m in ("all", "chunk")}

    run = run_cli("migrate", "--to", "edge", "--json", "--store", str(store))
    assert run.code == 0, run.stderr
    assert run.json["collections"] == before["collections"] == {"docs_children": 343, "docs_parents": 20, "docs_summaries": 0, "docs_questions": 0}
    assert (store / "edge").is_dir() and not (store / "qdrant").exists()
    assert [p.name for p in store.glob("qdrant.migrated-*")] == [Path(run.json["old_qdrant"]).name]
    assert "docs_children: 343/343 points" in run.stderr  # progress on stderr

    after = run_cli("status", "--json", "--store", str(store)).json
    assert after["backend"] == "edge" and after["qdrant"].startswith("edge:") and "backend_note" not in after
    assert after["collections"] == before["collections"] and after["embed_model"] == before["embed_model"]
    assert after["hybrid"] == "ready"  # BM25 vectors came along
    for (q, m), want in wanted.items():
        got = sources(store, q, m)
        assert [p for p, _ in got] == [p for p, _ in want], (q, m)
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4), (q, m)
    assert run_cli("check", "--store", str(store)).code == 0

    again = run_cli("migrate", "--to", "edge", "--json", "--store", str(store))
    assert again.code == 2 and again.json["error"]["type"] == "StoreError" and "exists already" in again.json["error"]["message"]


def test_a_local_store_stays_in_local_mode_until_migrated(local_plain_store: tuple[Path, Run], tmp_path: Path) -> None:
    """With the default backend (edge), an ingest into a local-mode store writes local mode, never a second store beside it."""
    store = copy_store(local_plain_store[0], tmp_path / "store")
    run = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=NO_LLM)
    assert run.code == 0 and run.json["stats"]["files_unchanged"] == 1
    assert not (store / "edge").exists()


def test_check_repair_rewrites_collections_of_the_older_engine_layout(plain_store: tuple[Path, Run], tmp_path: Path) -> None:
    """A store written before the cold, int8 layout: status names it, check --repair rewrites it in
    place, and the same questions get the same parents and scores."""
    import json

    import qdrant_edge as qe

    from pipeline.store.edge import tuning as edge

    store = copy_store(plain_store[0], tmp_path / "store")
    wanted = {(q, m): sources(store, q, m) for q in QUESTIONS for m in ("all", "chunk")}
    for folder in sorted(p for p in (store / "edge").iterdir() if p.is_dir()):
        # what create_collection wrote before: engine defaults (keyword indexes in RAM, BM25 pinned, floats)
        shard = qe.EdgeShard.load(str(folder), qe.EdgeConfig(
            hnsw_config=qe.HnswIndexConfig(**edge.HNSW),
            vectors={"": qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine, memory=qe.Memory.Cold)},
            sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}))
        for key in ("doc_id", "kind", "parent_id"):
            shard.update(qe.UpdateOperation.delete_field_index(key))
            shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
        shard.optimize()
        shard.close()
        meta = json.loads((folder / edge.SIDECAR).read_text())
        meta.pop("quantization")
        (folder / edge.SIDECAR).write_text(json.dumps(meta))
    before = run_cli("status", "--json", "--store", str(store)).json
    assert "docs_children" in before["layout_note"] and "check --repair" in before["layout_note"]

    run = run_cli("check", "--repair", "--store", str(store))
    assert run.code == 0, run.stderr
    assert "rewrote docs_children" in run.stderr
    after = run_cli("status", "--json", "--store", str(store)).json
    assert "layout_note" not in after and after["collections"] == before["collections"]
    assert "int8" in (store / "edge" / "docs_children" / "edge_config.json").read_text()
    for (q, m), want in wanted.items():
        got = sources(store, q, m)
        assert [p for p, _ in got] == [p for p, _ in want], (q, m)
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4), (q, m)
    assert run_cli("check", "--store", str(store)).code == 0


def test_service_ingests_while_8_threads_query_without_a_store_lock(plain_store: tuple[Path, Run], tmp_path: Path) -> None:
    store = copy_store(plain_store[0], tmp_path / "store")
    docs = tmp_path / "docs"
    facts = [f"The Quillmoor ferry number {i} carries exactly {400 + i} bicycles across Lake Vantor." for i in range(6)]
    for i, fact in enumerate(facts):
        make_pdf(docs / f"ferry{i}.pdf", fact)
    settings = Settings(store=store, service={"ingest_roots": [docs]}, **NO_LLM_SETTINGS)
    state = ServiceState(settings)
    with serve_in_thread(create_app(settings, state)) as served, httpx.Client(base_url=served.url, timeout=120) as c:
        assert not isinstance(state.client(), SerializedClient)  # edge: the engine's own locks
        baseline = c.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 3}).json()["sources"]
        top = baseline[0]["parent_id"]

        job = c.post("/ingest", json={"paths": [str(docs)]}).json()
        errors: list[str] = []
        answers: list[tuple[float, list[dict[str, Any]]]] = []
        finished = threading.Event()

        def ask() -> None:
            with httpx.Client(base_url=served.url, timeout=120) as mine:
                while not finished.is_set():
                    r = mine.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 3})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                    else:
                        answers.append((time.monotonic(), r.json()["sources"]))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            done = wait_for_job(c, job["id"], timeout=600)
            ended = time.monotonic()
        finally:
            time.sleep(0.5)  # a few more queries after the writes
            finished.set()
            for t in threads:
                t.join(60)
        assert done["state"] == "succeeded", done
        assert not errors, errors[:3]
        during = [a for when, a in answers if when < ended]
        assert len(during) >= 8, f"only {len(during)} queries overlapped the ingest"
        assert all(a and a[0]["parent_id"] == top for _, a in answers)  # consistent: same best parent every time
        ferry = c.post("/retrieve", json={"query": "How many bicycles does ferry number 3 carry?", "top_k": 3}).json()["sources"]
        assert any(s["doc_id"].endswith(".pdf") and "ferry" in s["doc_id"] for s in ferry)  # the ingest landed
        status = c.get("/status").json()
        assert status["backend"] == "edge" and status["documents"] == 7
