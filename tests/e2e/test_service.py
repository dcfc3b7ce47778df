"""The query service end to end: real uvicorn on a free loopback port, real models and stores, called over HTTP.

Embedded Qdrant allows one client per folder, so every server gets its own copy of a store.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from pipeline.config import Settings
from pipeline.logs import JsonFormatter
from pipeline.service.app import create_app
from pipeline.service.middleware import RedactFilter, RequestIdFilter
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import ParentStore
from tests.conftest import ROOT, SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, copy_store, run_cli, wait_for_job

pytestmark = [pytest.mark.e2e]

NO_LLM_SETTINGS: dict[str, Any] = {"llm": {"provider": "none"}, "ingest": {"enrich": False}}
S2ORC_QUESTION = "What is S2ORC?"
TOKEN = "tok-3f9a1c7e5b2d4f60a8c9e1b7d3f5a2c4"
FERRY = "The Quillmoor ferry carries exactly 417 bicycles across Lake Vantor every morning."
VIOLIN = "Copper violins from Brenhaven are tuned with walrus-bone pegs by the guild of Osric."


@dataclass
class Served:
    url: str
    app: FastAPI
    server: uvicorn.Server


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[Served]:
    """uvicorn on port 0 (the OS picks a free one) in a thread; stopped and joined in ``finally``."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start (see the log above)")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(timeout=120)


def make_pdf(path: Path, fact: str) -> Path:
    """A real two-page PDF (fpdf2) whose first page states ``fact``."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, f"{fact} " * 3)
    pdf.add_page()
    pdf.multi_cell(0, 8, "This page is about the weather in a town that does not exist. " * 12)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def sse_events(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """(event, decoded JSON data) pairs from text/event-stream lines."""
    events: list[tuple[str, Any]] = []
    name, data = None, []
    for line in [*lines, ""]:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and name is not None:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0.0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or line.split("{", 1)[0].split(" ", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def sample_store(plain_store: tuple[Path, Any]) -> Path:
    """The bundled sample ingested without LLM (20 parents), shared with the other e2e tests: copy before use."""
    return plain_store[0]


@pytest.fixture(scope="module")
def api(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Auth off, no LLM, a copy of the sample store."""
    store = copy_store(sample_store, tmp_path_factory.mktemp("api") / "store")
    with serve_in_thread(create_app(Settings(store=store, **NO_LLM_SETTINGS))) as served:
        yield served


@pytest.fixture()
def client(api: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=60) as c:
        yield c


class TestRetrieve:
    def test_same_object_as_the_cli(self, client: httpx.Client, sample_store: Path) -> None:
        resp = client.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 3})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["sources"][0]["doc_id"].endswith("acl2020.acl-main.447.pdf")
        assert set(body["sources"][0]["pages"]) <= {1, 2, 3}
        assert body["answer"] is None and body["stats"]["embedded_texts"] == 0
        cli = run_cli("query", S2ORC_QUESTION, "--retrieve-only", "--json", "--top-k", "3", "--store", str(sample_store), env=NO_LLM)
        assert cli.code == 0, cli.stderr
        assert body.keys() == cli.json.keys()
        assert [(s["parent_id"], s["score"], s["pages"]) for s in body["sources"]] == [
            (s["parent_id"], s["score"], s["pages"]) for s in cli.json["sources"]
        ]

    def test_filters_and_modes(self, client: httpx.Client) -> None:
        top = client.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 1}).json()["sources"][0]
        same = client.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 1, "filters": {"doc_id": top["doc_id"]}}).json()
        assert same["sources"][0]["parent_id"] == top["parent_id"]
        other = client.post("/retrieve", json={"query": S2ORC_QUESTION, "filters": {"doc_id": "/nowhere.pdf"}})
        assert other.status_code == 422 and "acl2020.acl-main.447.pdf" in other.text  # an unknown name names the closest, never an empty success
        base = client.post("/retrieve", json={"query": S2ORC_QUESTION, "mode": "base", "top_k": 2}).json()
        assert base["mode"] == "base" and len(base["sources"]) == 2
        assert all(m["kind"] == "parent" for s in base["sources"] for m in s["matched"])

    def test_rerank_is_chosen_per_request(self, client: httpx.Client) -> None:
        plain = client.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 3}).json()
        assert plain["stats"]["stages"] == ["dense", "bm25-relative"]  # (rerank_ms may count confidence's cross-encoder pairs)
        reranked = client.post("/retrieve", json={"query": S2ORC_QUESTION, "top_k": 3, "rerank": True}).json()
        assert reranked["stats"]["stages"] == ["dense", "bm25-relative", "rerank"] and reranked["stats"]["rerank_ms"] > 0
        assert all(0 <= s["score"] <= 1 for s in reranked["sources"])
        loose = client.post("/retrieve", json={"query": S2ORC_QUESTION, "rerank": "yes"})
        assert loose.status_code == 422

    def test_the_docs_retrieve_example_works_outside_docker(self, client: httpx.Client) -> None:
        """docs/service.md's /retrieve example filters by file name, so it finds the sample wherever it lies."""
        docs = (ROOT / "docs" / "service.md").read_text()
        body = json.loads(docs.split("localhost:8000/retrieve \\\n  -d '", 1)[1].split("'\n", 1)[0])
        resp = client.post("/retrieve", json=body)
        assert resp.status_code == 200 and resp.json()["sources"], resp.text
        assert all(s["doc_id"].endswith("/acl2020.acl-main.447.pdf") for s in resp.json()["sources"])

    def test_32_concurrent_requests_succeed_off_the_event_loop(self, api: Served) -> None:
        batcher = api.app.state.service.query_embedder().batcher
        batches, queries = batcher.batches, batcher.queries
        async def burst() -> tuple[list[httpx.Response], list[float], float]:
            async with httpx.AsyncClient(base_url=api.url, timeout=120, limits=httpx.Limits(max_connections=40)) as c:
                done: list[float] = []

                async def one(i: int) -> httpx.Response:
                    r = await c.post("/retrieve", json={"query": f"{S2ORC_QUESTION} ({i})", "top_k": 3})
                    done.append(time.perf_counter())
                    return r

                tasks = [asyncio.create_task(one(i)) for i in range(32)]
                await asyncio.sleep(0.05)
                health = await c.get("/healthz")
                health_done = time.perf_counter()
                assert health.status_code == 200
                return list(await asyncio.gather(*tasks)), done, health_done

        responses, done, health_done = asyncio.run(burst())
        assert [r.status_code for r in responses] == [200] * 32
        assert all(r.json()["sources"] for r in responses)
        # Retrieval runs in worker threads, so the loop answers /healthz while most retrievals still run.
        assert sum(t > health_done for t in done) >= 8, "the event loop was blocked by retrieval"
        # Their query embeddings shared ONNX calls (service.embed_batch_window_ms).
        assert batcher.queries - queries == 32 and batcher.batches - batches < 32


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "status", "needle"),
        [
            ({"query": ""}, 422, "query"),
            ({"query": "   \n "}, 422, "blank"),
            ({"query": "x" * 4001}, 422, "at most 4000"),
            ({}, 422, "query: Field required"),
            ({"query": "q", "top_k": 0}, 422, "top_k"),
            ({"query": "q", "top_k": 51}, 422, "top_k must be between 1 and 50, got 51"),
            ({"query": "q", "top_k": "three"}, 422, "top_k"),
            ({"query": "q", "mode": "fuzzy"}, 422, "'base', 'chunk', 'metadata' or 'all'"),
            ({"query": "q", "filters": {"author": "x"}}, 422, "filters.author"),
            ({"query": "q", "topk": 3}, 422, "topk: Extra inputs are not permitted"),
            ({"query": 42}, 422, "query"),
        ],
    )
    @pytest.mark.parametrize("route", ["/retrieve", "/query"])
    def test_bad_input_is_a_clear_4xx(self, client: httpx.Client, route: str, body: dict[str, Any], status: int, needle: str) -> None:
        resp = client.post(route, json=body)
        assert resp.status_code == status, resp.text
        err = resp.json()
        assert err["error"] == "InvalidRequest" and needle in err["detail"] and err["request_id"] == resp.headers["x-request-id"]
        assert "x" * 100 not in resp.text  # the input is not echoed back

    def test_malformed_json_and_oversized_body(self, client: httpx.Client) -> None:
        bad = client.post("/retrieve", content=b'{"query": ', headers={"content-type": "application/json"})
        assert bad.status_code == 422 and "JSON" in bad.json()["detail"]
        not_json = client.post("/retrieve", content=b"query=hi", headers={"content-type": "text/plain"})
        assert not_json.status_code == 422
        huge = client.post("/retrieve", json={"query": "q" * 70_000})
        assert huge.status_code == 413 and huge.json()["error"] == "RequestEntityTooLarge"

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"query": "'
            yield b"q" * 70_000
            yield b'"}'

        streamed = client.post("/retrieve", content=chunked(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "max_body_bytes" in streamed.json()["detail"]

    def test_query_without_an_llm_answers_with_a_cited_extract(self, client: httpx.Client) -> None:
        """answer.mode=auto: no capable generator, so /query answers as `query` does, extractively."""
        resp = client.post("/query", json={"query": S2ORC_QUESTION})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["answer_mode"] == "extractive" and body["answer"] and body["citations"]
        assert body["citations"][0]["pages"] and body["citations"][0]["doc_id"].endswith("acl2020.acl-main.447.pdf")
        none = client.post("/query", json={"query": S2ORC_QUESTION, "answer": "none"}).json()
        assert none["answer_mode"] == "none" and none["answer"] is None and none["sources"]
        assert client.post("/query", json={"query": S2ORC_QUESTION, "answer": "poem"}).status_code == 422

    def test_unknown_job_and_route(self, client: httpx.Client) -> None:
        assert client.get("/jobs/nope").status_code == 404
        assert client.get("/nowhere").json()["error"] == "NotFound"


class TestProbesAndDocs:
    def test_health_ready_status(self, client: httpx.Client) -> None:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["checks"] == {"qdrant": "ok", "docstore": "ok", "collections": "ok", "embedder": "ok", "llm": "not configured"}
        status = client.get("/status").json()
        assert status["parents"] == 20 and status["documents"] == 1
        assert status["collections"]["docs_children"] > 0 and status["embed_model"] == "all-MiniLM-L6-v2-int8"

    def test_metrics_by_route_and_status(self, client: httpx.Client) -> None:
        client.post("/retrieve", json={"query": S2ORC_QUESTION})
        client.post("/retrieve", json={"query": ""})
        text = client.get("/metrics").text
        assert metric(text, "pipeline_http_requests_total", route="/retrieve", method="POST", status="200") >= 1
        assert metric(text, "pipeline_http_requests_total", route="/retrieve", method="POST", status="422") >= 1
        assert metric(text, "pipeline_http_request_duration_seconds_count", route="/retrieve", status="200") >= 1
        assert metric(text, "pipeline_retrieval_duration_seconds_count", mode="all") >= 1
        assert metric(text, "pipeline_embedding_duration_seconds_count") >= 1
        assert metric(text, "pipeline_http_requests_in_flight") == 1.0  # this scrape itself
        assert "pipeline_llm_duration_seconds_bucket" in text

    def test_openapi_has_models_and_examples(self, client: httpx.Client) -> None:
        assert "swagger-ui" in client.get("/docs").text
        spec = client.get("/openapi.json").json()
        assert {"/retrieve", "/query", "/ingest", "/jobs/{job_id}", "/healthz", "/readyz", "/status", "/metrics"} <= spec["paths"].keys()
        schemas = spec["components"]["schemas"]
        assert {"RetrieveRequest", "QueryRequest", "Answer", "ErrorBody", "IngestJob", "Readiness"} <= schemas.keys()
        assert schemas["RetrieveRequest"]["examples"][0]["query"] == S2ORC_QUESTION
        assert "text/event-stream" in spec["paths"]["/query"]["post"]["responses"]["200"]["content"]

    def test_request_id_is_kept_or_made(self, client: httpx.Client) -> None:
        assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
        made = client.get("/healthz", headers={"X-Request-ID": "not ok;" * 20}).headers["x-request-id"]
        assert len(made) == 16 and made.isalnum()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path, io.StringIO]]:
    """Auth on, an empty store, ingest allowed under one folder; logs captured as the service writes them."""
    base = tmp_path_factory.mktemp("secured")
    docs = base / "docs"
    make_pdf(docs / "ferry.pdf", FERRY)
    make_pdf(docs / "violins.pdf", VIOLIN)
    settings = Settings(store=base / "store", service={"api_token": TOKEN, "ingest_roots": [docs]}, **NO_LLM_SETTINGS)
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter([TOKEN]))
    pipeline_logger = logging.getLogger("pipeline")
    old_level = pipeline_logger.level
    pipeline_logger.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    try:
        with serve_in_thread(create_app(settings)) as served:
            yield served, docs, logs
    finally:
        logging.getLogger().removeHandler(handler)
        pipeline_logger.setLevel(old_level)


class TestAuthAndIngest:
    ROUTES = [
        ("GET", "/readyz"),
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/jobs/x"),
        ("POST", "/retrieve"),
        ("POST", "/query"),
        ("POST", "/ingest"),
    ]

    def test_every_route_but_healthz_needs_the_token(self, secured: tuple[Served, Path, io.StringIO]) -> None:
        served, _, _ = secured
        with httpx.Client(base_url=served.url) as c:
            assert c.get("/healthz").status_code == 200
            for method, path in self.ROUTES:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}):
                    resp = c.request(method, path, json={"query": "q"} if method == "POST" else None, headers=headers)
                    assert resp.status_code == 401, (method, path, headers, resp.text)
                    assert resp.headers["www-authenticate"] == "Bearer" and resp.json()["error"] == "Unauthorized"
            ok = {"Authorization": f"Bearer {TOKEN}"}
            assert c.get("/status", headers=ok).status_code == 200
            assert c.get("/metrics", headers=ok).status_code == 200
            assert c.get("/openapi.json", headers=ok).json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

    def test_ingest_job_is_visible_to_retrieve_without_restart(self, secured: tuple[Served, Path, io.StringIO], tmp_path: Path) -> None:
        served, docs, _ = secured
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as c:
            # Empty store: not ready, and retrieval says why.
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["ready"] is False
            assert any("nothing ingested" in r for r in ready.json()["reasons"])
            empty = c.post("/retrieve", json={"query": "ferry"})
            assert empty.status_code == 503 and empty.json()["error"] == "StoreUnavailable"
            # Paths are checked before a job starts.
            outside = make_pdf(tmp_path / "outside.pdf", FERRY)
            for paths, needle in (([str(outside)], "outside service.ingest_roots"), ([str(docs / "missing.pdf")], "no such file"), (["docs/ferry.pdf"], "absolute")):
                bad = c.post("/ingest", json={"paths": paths})
                assert bad.status_code == 422 and needle in bad.json()["detail"], bad.text

            first = c.post("/ingest", json={"paths": [str(docs / "ferry.pdf")]})
            assert first.status_code == 202 and first.headers["location"] == f"/jobs/{first.json()['id']}"
            job = wait_for_job(c, first.json()["id"])
            assert job["state"] == "succeeded", job
            assert job["report"]["stats"]["files_added"] == 1 and job["progress"]["files_done"] == 1
            hit = c.post("/retrieve", json={"query": "How many bicycles does the Quillmoor ferry carry?", "top_k": 1})
            assert hit.status_code == 200, hit.text
            assert hit.json()["sources"][0]["doc_id"] == str((docs / "ferry.pdf").resolve())
            assert hit.json()["stats"]["embedded_texts"] == 0  # ingest jobs embed with their own embedder
            assert c.get("/readyz").status_code == 200
            engine = served.app.state.service.current_engine

            second = c.post("/ingest", json={"paths": [str(docs)]})
            job = wait_for_job(c, second.json()["id"])
            assert job["state"] == "succeeded" and job["report"]["stats"]["files_added"] == 1 and job["report"]["stats"]["files_unchanged"] == 1
            hit = c.post("/retrieve", json={"query": "What are Brenhaven copper violins tuned with?", "top_k": 1}).json()
            assert hit["sources"][0]["doc_id"] == str((docs / "violins.pdf").resolve())
            assert served.app.state.service.current_engine is engine  # same engine: no reload, no restart
            assert c.get("/status").json()["documents"] == 2

    def test_token_never_reaches_the_logs(self, secured: tuple[Served, Path, io.StringIO]) -> None:
        served, _, logs = secured
        with httpx.Client(base_url=served.url) as c:
            c.get("/status", headers={"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "find-me-1"})
            c.get(f"/jobs/{TOKEN}", headers={"Authorization": f"Bearer {TOKEN}"})  # even when a client puts it in a path
            c.get("/status", headers={"Authorization": f"Bearer {TOKEN[:-1]}"})
        text = logs.getvalue()
        lines = [json.loads(line) for line in text.splitlines()]
        access = [r for r in lines if r["logger"] == "pipeline.service.access"]
        assert any(r["request_id"] == "find-me-1" and r["status"] == 200 and r["route"] == "/status" for r in access)
        assert any(r["status"] == 401 for r in access)
        assert TOKEN not in text and TOKEN[:-1] not in text
        assert any(r["path"] == "/jobs/[redacted]" for r in access)


def test_readyz_503_when_the_store_holds_another_embedding_model(tmp_path: Path) -> None:
    settings = Settings(store=tmp_path / "store", **NO_LLM_SETTINGS)
    client = qstore.open_client(settings)
    qstore.ensure_collections(client, settings, "text-embedding-3-small", 1536)
    client.close()
    ParentStore(settings.store / "docstore.sqlite").close()
    with serve_in_thread(create_app(settings)) as served, httpx.Client(base_url=served.url) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["collections"] != "ok"
        assert any("text-embedding-3-small/1536" in r and "all-MiniLM-L6-v2-int8/384" in r for r in ready.json()["reasons"])
        resp = c.post("/retrieve", json={"query": "anything"})
        assert resp.status_code == 503 and resp.json()["error"] == "ModelMismatch"
        assert c.get("/healthz").status_code == 200  # alive, just not ready


def test_starts_and_reports_503_while_the_qdrant_server_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(store=tmp_path / "store", qdrant={"url": "http://127.0.0.1:9", "timeout": 1}, **NO_LLM_SETTINGS)
    with serve_in_thread(create_app(settings)) as served, httpx.Client(base_url=served.url, timeout=60) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.json()["checks"]["qdrant"]
        resp = c.post("/retrieve", json={"query": "anything"})
        assert resp.status_code == 503 and resp.json()["error"] == "StoreUnavailable"


@pytest.mark.docker
def test_with_a_qdrant_server_cli_ingest_is_seen_without_restart(qdrant_url: str, tmp_path: Path) -> None:
    """Server mode: no folder lock, so `pipeline ingest` runs beside the service, which sees the new
    documents on its next request (engine built once data exists; later points are searched live)."""
    store = tmp_path / "store"
    env = {**NO_LLM, "QDRANT_URL": qdrant_url, "PIPELINE_QDRANT__PREFIX": "svc"}
    settings = Settings(store=store, qdrant={"url": qdrant_url, "prefix": "svc"}, **NO_LLM_SETTINGS)
    with serve_in_thread(create_app(settings)) as served, httpx.Client(base_url=served.url, timeout=60) as c:
        assert c.post("/retrieve", json={"query": S2ORC_QUESTION}).status_code == 503
        first = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=env)
        assert first.code == 0, first.stderr
        hit = c.post("/retrieve", json={"query": S2ORC_QUESTION}).json()
        assert hit["sources"][0]["doc_id"].endswith(SAMPLE_PDF.name)
        ferry = make_pdf(tmp_path / "docs" / "ferry.pdf", FERRY)
        second = run_cli("ingest", str(ferry), "--store", str(store), env=env)
        assert second.code == 0, second.stderr
        top = c.post("/retrieve", json={"query": "How many bicycles does the Quillmoor ferry carry?", "top_k": 1}).json()
        assert top["sources"][0]["doc_id"] == str(ferry.resolve())
        assert c.get("/readyz").json()["ready"] is True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_logs_json_and_stops_on_sigterm(sample_store: Path, tmp_path: Path) -> None:
    """The real command in its own process: JSON lines with request ids, no token, exit 0 on SIGTERM,
    and the embedded store it owns is refused to a CLI query with a pointer to the service."""
    store = copy_store(sample_store, tmp_path / "store")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    env.update(NO_LLM, PIPELINE_API_TOKEN=TOKEN, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--store", str(store), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "cmd-req-1"}
        resp = httpx.post(f"{url}/retrieve", json={"query": S2ORC_QUESTION}, headers=auth, timeout=60)
        assert resp.status_code == 200 and resp.json()["sources"]
        assert httpx.get(f"{url}/status").status_code == 401
        locked = run_cli("query", S2ORC_QUESTION, "--retrieve-only", "--store", str(store), env=NO_LLM)
        assert locked.code == 2 and "POST /retrieve" in locked.stderr and "POST /ingest" not in locked.stderr  # advice for a query
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # uvicorn re-raises SIGTERM once it has shut down cleanly, so the exit status says "terminated".
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # every line is JSON
    assert any(r.get("request_id") == "cmd-req-1" and r.get("status") == 200 for r in records)
    assert [r["msg"] for r in records][-3:-1] == ["shutting down: stopping ingest jobs, closing the store", "Application shutdown complete."]
    assert not any("color_message" in r for r in records)
    assert TOKEN not in stderr


# --- with the LLM (SmolLM2 via xllamacpp): answers, streaming, the generation limit, graceful shutdown

# answer.mode=llm: with SmolLM2 the default (auto) answers extractively, and these tests are about generation.
LLM_SETTINGS: dict[str, Any] = {"llm": {"provider": "llamacpp", "model": "smollm2", "max_tokens": 48}, "ingest": {"enrich": False}, "answer": {"mode": "llm"}}


def wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout} s: {httpx.get(f'{url}/readyz').text}")


@pytest.fixture(scope="module")
def llm_api(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pytest.importorskip("xllamacpp")
    store = copy_store(sample_store, tmp_path_factory.mktemp("llm-api") / "store")
    settings = Settings(store=store, service={"max_concurrent_generations": 1, "retry_after": 7}, **LLM_SETTINGS)
    with serve_in_thread(create_app(settings)) as served:
        wait_ready(served.url)
        yield served


@pytest.mark.llm
class TestQuery:
    def test_answer_with_sources(self, llm_api: Served) -> None:
        resp = httpx.post(f"{llm_api.url}/query", json={"query": S2ORC_QUESTION, "top_k": 2}, timeout=300)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["answer"] and body["stats"]["answer_ms"] > 0
        assert len(body["sources"]) == 2 and set(body["sources"][0]["pages"]) <= {1, 2, 3}
        text = httpx.get(f"{llm_api.url}/metrics").text
        assert metric(text, "pipeline_llm_duration_seconds_count") >= 1

    def test_stream_sends_tokens_then_sources_and_limits_generations(self, llm_api: Served) -> None:
        with httpx.Client(base_url=llm_api.url, timeout=300) as c, httpx.Client(base_url=llm_api.url, timeout=60) as other:
            with c.stream("POST", "/query", json={"query": S2ORC_QUESTION, "top_k": 2, "stream": True}) as stream:
                assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.iter_lines()
                first: list[str] = []
                for line in lines:
                    first.append(line)
                    if line == "" and any(x.startswith("event: token") for x in first):
                        break
                # The only generation slot is taken by this stream: another answer must wait.
                busy = other.post("/query", json={"query": "What is SciBERT?"})
                assert busy.status_code == 429 and busy.headers["retry-after"] == "7"
                assert busy.json()["error"] == "TooManyRequests"
                assert other.post("/retrieve", json={"query": "What is SciBERT?"}).status_code == 200  # retrieval is not limited
                events = sse_events([*first, *lines])
            names = [name for name, _ in events]
            assert names[0] == "token" and names[-1] == "sources"
            answer = events[-1][1]
            # The final event is what to show (issue 22): the streamed text, or, when the sources do not
            # support it, the extract announced by a `replaced` event just before.
            if "replaced" in names:
                assert names[-2] == "replaced" and set(names[:-2]) == {"token"}
                assert answer["answer"] == events[-2][1]["answer"] and answer["answer_mode"] == "extractive" and answer["replaced"]
            else:
                assert set(names[:-1]) == {"token"} and answer["answer_mode"] == "llm"
                assert answer["answer"] == "".join(d["text"] for _, d in events[:-1]).strip()
            assert answer["sources"] and answer["sources"][0]["doc_id"].endswith("acl2020.acl-main.447.pdf")
            text = other.get("/metrics").text
            assert metric(text, "pipeline_generations_in_flight") == 0.0  # the slot came back
            assert metric(text, "pipeline_generations_rejected_total") >= 1


@pytest.mark.llm
def test_shutdown_lets_an_in_flight_answer_finish(sample_store: Path, tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    store = copy_store(sample_store, tmp_path / "store")
    app = create_app(Settings(store=store, **LLM_SETTINGS))
    result: dict[str, httpx.Response] = {}
    with serve_in_thread(app) as served:
        wait_ready(served.url)

        def ask() -> None:
            result["resp"] = httpx.post(f"{served.url}/query", json={"query": S2ORC_QUESTION, "top_k": 1}, timeout=300)

        asker = threading.Thread(target=ask)
        asker.start()
        deadline = time.monotonic() + 60
        while metric(httpx.get(f"{served.url}/metrics").text, "pipeline_generations_in_flight") < 1:
            assert time.monotonic() < deadline, "the query never started generating"
            time.sleep(0.02)
        served.server.should_exit = True  # what SIGTERM does
        asker.join(timeout=300)
    assert result["resp"].status_code == 200 and result["resp"].json()["answer"]
