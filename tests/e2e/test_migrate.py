"""Stores written by layout 1 (parent self-references inside ``children``) are migrated in place."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import models

from pipeline.store.docstore import ParentStore
from tests.e2e.conftest import NO_LLM, copy_store, Run, run_cli, store_client

QUERY = "How does SciBERT differ from a BERT model pretrained on S2ORC?"


def downgrade(store: Path, copy_first: bool = False) -> int:
    """Rewrite a current store into layout 1, exactly as the old writer left it; returns points moved.

    With ``copy_first`` the parent points stay in ``docs_parents`` too: the state a migration killed
    right after its copy step leaves behind.
    """
    client = store_client(store)
    try:
        points, _ = client.scroll("docs_parents", limit=10_000, with_payload=True, with_vectors=True)
        client.upsert("docs_children", points=[models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points])
        if not copy_first:
            client.delete_collection("docs_parents")
    finally:
        client.close()
    parents = ParentStore(store / "docstore.sqlite")
    try:
        for doc_id, entry in parents.raw_ledger().items():  # as layout 1 wrote it
            refs = entry["refs"]
            refs["children"] = refs["children"] + refs.pop("parents")
            parents.put_ledger(doc_id, entry)
    finally:
        parents.close()
    return len(points)


def top_parents(store: Path, mode: str) -> list[str]:
    run = run_cli("query", QUERY, "--store", str(store), "--mode", mode, "--top-k", "3", "--retrieve-only", "--json", env=NO_LLM)
    assert run.code == 0, run.stderr
    return [s["readable_id"] for s in run.json["sources"]]


@pytest.fixture
def legacy_store(any_store: tuple[Path, Run], tmp_path: Path) -> tuple[Path, Path, int]:
    original, _ = any_store
    store = tmp_path / "legacy"
    copy_store(original, store)
    return original, store, downgrade(store)


@pytest.mark.e2e
def test_query_on_old_layout_says_how_to_migrate(legacy_store: tuple[Path, Path, int]) -> None:
    _, store, moved = legacy_store
    assert moved > 0
    run = run_cli("query", QUERY, "--store", str(store), "--retrieve-only", env=NO_LLM)
    assert run.code == 2
    assert "older version" in run.stderr and "check --repair" in run.stderr


@pytest.mark.e2e
def test_check_reports_then_repair_migrates(legacy_store: tuple[Path, Path, int]) -> None:
    original, store, moved = legacy_store
    before = run_cli("check", "--store", str(store), "--json")
    assert before.code == 1
    assert [p["kind"] for p in before.json["problems"]] == ["old-layout"]

    repaired = run_cli("check", "--repair", "--store", str(store), "--json")
    assert repaired.code == 0, repaired.stderr
    assert repaired.json["repaired"][0] == f"migrated the layout: moved {moved} parent self-references"

    after = run_cli("check", "--store", str(store), "--json")
    assert after.code == 0 and after.json["ok"], after.stdout
    assert after.json["points"] == run_cli("check", "--store", str(original), "--json").json["points"]
    for mode in ("base", "chunk"):
        assert top_parents(store, mode) == top_parents(original, mode)


@pytest.mark.e2e
def test_ingest_finishes_a_migration_killed_after_its_copy(any_store: tuple[Path, Run], tmp_path: Path) -> None:
    original, _ = any_store
    store = tmp_path / "half"
    copy_store(original, store)
    downgrade(store, copy_first=True)
    from tests.conftest import SAMPLE_PDF

    run = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=NO_LLM)
    assert run.code == 0, run.stderr
    assert run.json["stats"]["files_unchanged"] == 1 and run.json["stats"]["embedded_texts"] == 0
    check = run_cli("check", "--store", str(store), "--json")
    assert check.code == 0 and check.json["ok"], check.stdout
    assert check.json["points"] == run_cli("check", "--store", str(original), "--json").json["points"]


@pytest.mark.e2e
def test_service_on_old_layout_is_not_ready_and_says_how_to_migrate(legacy_store: tuple[Path, Path, int]) -> None:
    import httpx

    from pipeline.config import Settings
    from pipeline.service.app import create_app
    from tests.e2e.test_service import NO_LLM_SETTINGS, serve_in_thread

    _, store, _ = legacy_store
    with serve_in_thread(create_app(Settings(store=store, **NO_LLM_SETTINGS))) as served, httpx.Client(base_url=served.url) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert any("older version" in r and "check --repair" in r for r in ready.json()["reasons"]), ready.json()
        resp = c.post("/retrieve", json={"query": QUERY})
        assert resp.status_code == 503 and "check --repair" in resp.json()["detail"]
