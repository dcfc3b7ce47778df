"""`pipeline serve` replicas on one database (issue 25, piece 3): readiness reports it, losing it gives 503 +
Retry-After and the replica recovers by itself when it returns; two replicas answer identically; a
document ingested (removed) through one is answered (gone) on the other. Real server processes, real PostgreSQL.

The fault is caused for real without stopping the shared server: the database is closed to new
connections (``ALLOW_CONNECTIONS false``) and every session to it is ended (``pg_terminate_backend``).
Two embedded-engine processes cannot share one store's vectors, so the identical-answers test gives
each replica a copy of the vectors (the parents, ledger and catalog are the database's); the
ingest-through-one-replica test needs shared vectors: it runs against ``QDRANT_URL`` and is skipped,
with the reason, when no Qdrant server answers there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import psycopg

from tests.conftest import ROOT, SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, run_cli
from tests.e2e.pdfs import page_text, write_pdf
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


@contextmanager
def replica(store: Path, env: dict[str, str]) -> Iterator[str]:
    """A `pipeline serve` process on ``store``, ready (``/readyz`` 200); yields its base URL."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    full.update(env, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"))
    if "PIPELINE_MODEL_CACHE" in os.environ:
        full["PIPELINE_MODEL_CACHE"] = os.environ["PIPELINE_MODEL_CACHE"]
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--store", str(store), "--port", str(port)],
                            cwd=ROOT, env=full, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def answers(url: str, questions: list[str]) -> list[list[tuple]]:
    out = []
    for q in questions:
        r = httpx.post(f"{url}/retrieve", json={"query": q}, timeout=120)
        assert r.status_code == 200, r.text
        out.append([(s["doc_id"], s["parent_id"], round(s["score"], 4), s["text"]) for s in r.json()["sources"]])
    return out


def documents(url: str) -> list[str]:
    r = httpx.get(f"{url}/documents", timeout=60)
    assert r.status_code == 200, r.text
    return sorted(d["name"] for d in r.json())


def test_two_replicas_on_one_database_answer_identically(tmp_path: Path, pg_url: str) -> None:
    env = {"PIPELINE_DATABASE__URL": pg_url, **NO_LLM}
    store = tmp_path / "a"
    ingested = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=env)
    assert ingested.code == 0, ingested.stderr
    shutil.copytree(store, tmp_path / "b")  # the vectors: each embedded engine needs its own copy
    questions = [QUESTION, "How many papers does the corpus contain?", "Which PDF parser was used?"]
    with replica(store, env) as one, replica(tmp_path / "b", env) as two:
        for url in (one, two):
            ready = httpx.get(f"{url}/readyz", timeout=30).json()
            assert ready["checks"]["database"] == "ok" and ready["checks"]["docstore"] == "ok"
        first = answers(one, questions)
        assert all(first) and answers(two, questions) == first
        assert documents(one) == documents(two) == ["acl2020.acl-main.447.pdf"]


def qdrant_server() -> str:
    """``QDRANT_URL`` if a Qdrant server answers there; else the test is skipped with the reason."""
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("no Qdrant server: QDRANT_URL is not set (two replicas share vectors only through a server)")
    try:
        httpx.get(f"{url.rstrip('/')}/readyz", timeout=3,
                  headers={"api-key": os.environ["QDRANT_API_KEY"]} if os.environ.get("QDRANT_API_KEY") else None).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"no Qdrant server answers at QDRANT_URL={url}: {exc}")
    return url


FACT = "The Quillmoor ferry carries exactly 417 bicycles across Lake Vantor every morning."


def test_a_document_ingested_through_one_replica_is_answered_on_the_other(tmp_path: Path, pg_url: str) -> None:
    qdrant = qdrant_server()
    prefix = f"fleet{uuid.uuid4().hex[:8]}"
    docs = tmp_path / "docs"
    pages = [page_text(f"f{i}") for i in range(3)]
    pages[1] = FACT + " " + pages[1]
    write_pdf(docs / "ferry.pdf", pages)
    env = {"PIPELINE_DATABASE__URL": pg_url, "QDRANT_URL": qdrant, "PIPELINE_QDRANT__PREFIX": prefix,
           "PIPELINE_SERVICE__INGEST_ROOTS": f'["{docs}", "{SAMPLE_PDF.parent}"]', **NO_LLM}
    if os.environ.get("QDRANT_API_KEY"):
        env["QDRANT_API_KEY"] = os.environ["QDRANT_API_KEY"]
    first = run_cli("ingest", str(SAMPLE_PDF), "--store", str(tmp_path / "cli"), "--json", env=env)  # both replicas start ready
    assert first.code == 0, first.stderr
    question = "How many bicycles does the Quillmoor ferry carry?"
    try:
        with replica(tmp_path / "one", env) as one, replica(tmp_path / "two", env) as two:
            job = httpx.post(f"{one}/ingest", json={"paths": [str(docs)]}, timeout=60)
            assert job.status_code == 202, job.text
            deadline = time.monotonic() + 600
            while (state := httpx.get(f"{one}/jobs/{job.json()['id']}", timeout=30).json())["state"] in ("queued", "running"):
                assert time.monotonic() < deadline, state
                time.sleep(0.5)
            assert state["state"] == "succeeded", state
            deadline = time.monotonic() + 30  # the other replica re-reads the catalog at most once a second
            while "ferry.pdf" not in documents(two):
                assert time.monotonic() < deadline, documents(two)
                time.sleep(0.5)
            assert FACT in answers(two, [question])[0][0][3]  # answered by the replica that did not ingest it
            removed = httpx.delete(f"{two}/documents/ferry.pdf", timeout=120)
            assert removed.status_code == 200, removed.text
            deadline = time.monotonic() + 30
            while "ferry.pdf" in documents(one):
                assert time.monotonic() < deadline, documents(one)
                time.sleep(0.5)
            assert all(FACT not in text for *_, text in answers(one, [question])[0])  # gone on the first one too
    finally:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=qdrant, api_key=os.environ.get("QDRANT_API_KEY"))
        for c in client.get_collections().collections:
            if c.name.startswith(prefix):
                client.delete_collection(c.name)
        client.close()


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
