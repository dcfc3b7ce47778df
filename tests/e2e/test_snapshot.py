"""Issue 23, point 6: ``snapshot create`` / ``restore`` and ``POST /snapshots`` on real stores.

A restored store answers 20 questions (sentences of the sample) with identical sources; restore refuses
another embedding model, a store holding documents without ``--force``, and a snapshot whose SQLite
copy changed; a snapshot taken by the service while 8 clients query it costs them 0 errors and
restores to a store with the same counts.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from pipeline.models import Mode
from pipeline.service.app import create_app
from tests.e2e.conftest import NO_LLM, Run, copy_store, run_cli
from tests.e2e.test_service import FERRY, NO_LLM_SETTINGS, S2ORC_QUESTION, TOKEN, serve_in_thread

pytestmark = [pytest.mark.e2e]


def questions(store: Path, n: int = 20) -> list[str]:
    """``n`` questions made of the sample's own sentences: one from each parent, read from the docstore."""
    conn = sqlite3.connect(f"file:{store / 'docstore.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT value FROM kv WHERE collection = 'parents/data' ORDER BY key").fetchall()
    finally:
        conn.close()
    out: list[str] = []
    for (value,) in rows:
        data = json.loads(value)
        text = " ".join(str(data.get("__data__", data).get("text", "")).split())
        sentences = [s for s in re.split(r"(?<=[.?!])\s+", text) if 60 <= len(s) <= 300]
        if sentences:
            out.append(sentences[len(sentences) // 2])
    assert len(out) >= n, f"only {len(out)} parents with a usable sentence"
    return out[:n]


def answers(store: Path, qs: list[str]) -> list[list[tuple[str, float, list[str], list[int]]]]:
    """Each question's sources as ``query --retrieve-only`` gets them (the same Engine, in this process)."""
    from pipeline.retrieve.engine import Engine

    with Engine(Settings(store=store, **NO_LLM_SETTINGS), load_llm=False) as engine:
        return [
            [(s.parent_id, round(s.score, 6), sorted(f"{m.kind.value}/{m.via}/{m.node_id}" for m in s.matched), s.pages) for s in engine.query(q, Mode.ALL, 3, None, answer="none").sources]
            for q in qs
        ]


@pytest.fixture(scope="module")
def snapshot(plain_store: tuple[Path, Run], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """(a copy of the sample store, a snapshot of it made by the CLI, its manifest)."""
    base = tmp_path_factory.mktemp("snapshot")
    store = copy_store(plain_store[0], base / "store")
    made = run_cli("snapshot", "create", str(base / "snap"), "--store", str(store), "--json", env=NO_LLM)
    assert made.code == 0, made.stderr
    return store, base / "snap", made.json


def test_manifest_records_model_counts_and_hashes(snapshot: tuple[Path, Path, dict[str, Any]]) -> None:
    import hashlib

    store, snap, manifest = snapshot
    assert manifest["embed_model"] == "all-MiniLM-L6-v2-int8" and manifest["embed_dim"] == 384
    assert manifest["collections"]["docs_children"] > 0 and manifest["collections"]["docs_parents"] == 20
    assert manifest["documents"] == 1 and manifest["parents"] == 20
    for name in ("docstore.sqlite", "cache.sqlite"):
        assert manifest["sha256"][name] == hashlib.sha256((snap / name).read_bytes()).hexdigest()
    assert json.loads((snap / "manifest.json").read_text())["collections"] == manifest["collections"]
    logical = sum(f.stat().st_size for f in snap.rglob("*") if f.is_file())
    on_disk = sum(f.stat().st_blocks * 512 for f in snap.rglob("*") if f.is_file())
    assert on_disk < logical / 10, (on_disk, logical)  # sparse: the engine's pre-sized holes stay holes


def test_restored_store_answers_20_questions_with_identical_sources(snapshot: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    store, snap, manifest = snapshot
    target = tmp_path / "restored"
    restored = run_cli("snapshot", "restore", str(snap), "--store", str(target), "--json", env=NO_LLM)
    assert restored.code == 0, restored.stderr
    assert restored.json["collections"] == manifest["collections"]
    qs = questions(store)
    want, got = answers(store, qs), answers(target, qs)
    assert all(want), "every question finds sources"
    assert got == want
    cli = run_cli("query", qs[0], "--retrieve-only", "--json", "--store", str(target), env=NO_LLM)
    assert cli.code == 0, cli.stderr
    assert [s["parent_id"] for s in cli.json["sources"]] == [p for p, *_ in want[0]]
    assert run_cli("check", "--store", str(target), env=NO_LLM).code == 0


def test_restore_refuses_a_store_with_documents_unless_forced_and_a_changed_copy(snapshot: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    store, snap, _ = snapshot
    target = copy_store(store, tmp_path / "target")
    refused = run_cli("snapshot", "restore", str(snap), "--store", str(target), env=NO_LLM)
    assert refused.code == 2 and "holds 1 documents: pass --force" in refused.stderr
    forced = run_cli("snapshot", "restore", str(snap), "--store", str(target), "--force", env=NO_LLM)
    assert forced.code == 0, forced.stderr

    damaged = copy_store(snap, tmp_path / "damaged")
    with (damaged / "docstore.sqlite").open("r+b") as f:
        f.seek(200)
        f.write(b"\x01")
    bad = run_cli("snapshot", "restore", str(damaged), "--store", str(tmp_path / "fresh"), env=NO_LLM)
    assert bad.code == 2 and "sha256 differs" in bad.stderr
    assert not (tmp_path / "fresh" / "docstore.sqlite").exists()


def test_restore_refuses_a_snapshot_of_another_embedding_model(snapshot: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    _, snap, _ = snapshot
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text(FERRY + "\n")
    other = tmp_path / "bge"
    made = run_cli("ingest", str(docs), "--store", str(other), env={**NO_LLM, "PIPELINE_EMBED__MODEL": "bge-small"})
    assert made.code == 0, made.stderr
    refused = run_cli("snapshot", "restore", str(snap), "--store", str(other), "--force", env=NO_LLM)
    assert refused.code == 2 and "embedding model is all-MiniLM-L6-v2-int8" in refused.stderr, refused.stderr
    status = run_cli("status", "--json", "--store", str(other), env=NO_LLM)
    assert status.json["documents"] == 1 and status.json["embed_model"] != "all-MiniLM-L6-v2-int8"  # untouched


def test_service_snapshot_while_8_clients_query_has_0_errors(plain_store: tuple[Path, Run], tmp_path: Path) -> None:
    store = copy_store(plain_store[0], tmp_path / "store")
    settings = Settings(store=store, service={"api_token": TOKEN, "snapshot_dir": tmp_path / "snaps"}, **NO_LLM_SETTINGS)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with serve_in_thread(create_app(settings)) as served, httpx.Client(base_url=served.url, timeout=120, headers=headers) as c:
        top = c.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 3}).json()["sources"][0]["parent_id"]
        errors: list[str] = []
        answered: list[float] = []
        finished = threading.Event()

        def ask() -> None:
            with httpx.Client(base_url=served.url, timeout=120, headers=headers) as mine:
                while not finished.is_set():
                    r = mine.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 3})
                    if r.status_code != 200 or r.json()["sources"][0]["parent_id"] != top:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                    else:
                        answered.append(time.monotonic())

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)  # the clients are querying before the snapshot starts
            started = time.monotonic()
            made = c.post("/snapshots", json={"name": "under-load"})
            ended = time.monotonic()
            time.sleep(0.5)
        finally:
            finished.set()
            for t in threads:
                t.join(60)
        assert made.status_code == 201, made.text
        assert not errors, errors[:3]
        assert any(started <= when <= ended for when in answered) or ended - started < 0.2, "no query overlapped the snapshot"
        assert c.post("/snapshots", json={"name": "under-load"}).status_code == 409
        assert httpx.post(f"{served.url}/snapshots", json={}).status_code == 401  # token-protected like /ingest
        manifest = made.json()
        assert str(tmp_path) not in made.text and manifest["path"] == "<snapshot_dir>/under-load"  # no server paths
    target = tmp_path / "restored"
    restored = run_cli("snapshot", "restore", str(tmp_path / "snaps" / "under-load"), "--store", str(target), "--json", env=NO_LLM)
    assert restored.code == 0, restored.stderr
    assert restored.json["collections"] == manifest["collections"] and manifest["documents"] == 1
