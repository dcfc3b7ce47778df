"""A `pipeline serve` replica on the database (issue 25, piece 3): readiness reports it, losing it gives 503 +
Retry-After, and the replica recovers by itself when it returns. Real server process, real PostgreSQL.

The fault is caused for real without stopping the shared server: the database is closed to new
connections (``ALLOW_CONNECTIONS false``) and every session to it is ended (``pg_terminate_backend``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import psycopg

from tests.conftest import ROOT, SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, run_cli
from tests.e2e.test_service import free_port
from tests.pgdb import ADMIN_URL, pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
QUESTION = "What is S2ORC?"


def set_reachable(url: str, on: bool) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if on else "false"}')
        if not on:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def test_replica_reports_the_database_and_recovers(tmp_path: Path, pg_url: str) -> None:
    env = {"PIPELINE_DATABASE__URL": pg_url, **NO_LLM}
    store = tmp_path / "store"
    ingested = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=env)
    assert ingested.code == 0, ingested.stderr
    assert not (store / "docstore.sqlite").exists() and not (store / "cache.sqlite").exists()
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    full.update(env, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"), PIPELINE_SERVICE__RETRY_AFTER="3")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--store", str(store), "--port", str(port)],
                            cwd=ROOT, env=full, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=10)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.3)
        assert ready.json()["checks"]["database"] == "ok"
        before = httpx.post(f"{url}/retrieve", json={"query": QUESTION}, timeout=60)
        assert before.status_code == 200 and before.json()["sources"]

        set_reachable(pg_url, False)
        try:
            down = httpx.get(f"{url}/readyz", timeout=30)
            assert down.status_code == 503 and down.headers["Retry-After"] == "3"
            assert "unreachable" in down.json()["checks"]["database"]
            lost = httpx.post(f"{url}/retrieve", json={"query": QUESTION}, timeout=60)
            assert lost.status_code == 503 and lost.headers["Retry-After"] == "3", lost.text
        finally:
            set_reachable(pg_url, True)
        deadline = time.monotonic() + 30  # no restart: the next probe and the next query simply succeed
        while httpx.get(f"{url}/readyz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "the replica did not recover"
            time.sleep(0.3)
        after = httpx.post(f"{url}/retrieve", json={"query": QUESTION}, timeout=60)
        assert after.status_code == 200 and after.json()["sources"] == before.json()["sources"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
