"""Issue 21, point 7 (in-process): /query without an LLM is as concurrent as /retrieve, a dropped SSE
client frees its generation slot at once, a trickled body times out, an over-long query is a 422."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from tests.unit.service.fakes import FakeEngine, fake_service


async def _burst(app: Any, n: int, body: dict[str, Any]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses: list[httpx.Response] = []

        async def one() -> None:
            responses.append(await client.post("/query", json=body))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    return responses


@pytest.mark.parametrize("answer", ["extractive", "none"])
def test_eight_concurrent_queries_without_generation_all_succeed(tmp_path: Path, answer: str) -> None:
    """Before: every /query took the one generation slot, so 8 at once gave 1 x 200 and 7 x 429."""
    app, state, engine = fake_service(tmp_path, FakeEngine(seconds=0.3), retrieval_threads=4)
    responses = anyio.run(_burst, app, 8, {"query": "What does the ferry carry?", "answer": answer})
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses if r.status_code != 200]
    assert engine.most_at_once == 4  # in the retrieval threads, as /retrieve: not one at a time, not unbounded
    assert state.metrics.generations_rejected._value.get() == 0


def test_llm_answers_still_take_the_generation_slots(tmp_path: Path) -> None:
    app, state, engine = fake_service(tmp_path, FakeEngine(seconds=0.3), max_concurrent_generations=1, retry_after=7)
    responses = anyio.run(_burst, app, 3, {"query": "What does the ferry carry?", "answer": "llm"})
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 429, 429]
    assert next(r for r in responses if r.status_code == 429).headers["retry-after"] == "7"


def _http_scope(path: str, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # as uvicorn's h11 protocol says
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers if headers is not None else [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def test_a_dropped_sse_client_frees_its_generation_slot_at_once(tmp_path: Path) -> None:
    """The LLM thread is still busy (its next token comes in 30 s); the slot must not wait for it."""
    app, state, engine = fake_service(tmp_path, max_concurrent_generations=1)
    body = json.dumps({"query": "What does the ferry carry?", "answer": "llm", "stream": True}).encode()

    async def scenario() -> tuple[list[bytes], float]:
        first_token, gone = anyio.Event(), anyio.Event()
        chunks: list[bytes] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if b"event: token" in message.get("body", b""):
                    first_token.set()

        freed_after = float("inf")
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, _http_scope("/query", body), receive, send)
            with anyio.fail_after(10):
                await first_token.wait()
            assert state.metrics.generations_in_flight._value.get() == 1
            left = time.perf_counter()
            gone.set()  # the client closes the connection
            with anyio.move_on_after(2):
                while state.metrics.generations_in_flight._value.get() != 0:
                    await anyio.sleep(0.01)
                freed_after = time.perf_counter() - left
                slot = await state.generations.acquire()  # the next answer can start
                slot.release()
            engine.unblock.set()  # let the fake LLM thread end
        return chunks, freed_after

    chunks, freed_after = anyio.run(scenario)
    assert freed_after < 0.5, f"slot still held {freed_after:.1f} s after the client left"
    assert b"event: sources" not in b"".join(chunks)


def test_a_trickled_body_gets_408_and_the_connection_closed(tmp_path: Path) -> None:
    app, _, _ = fake_service(tmp_path, body_timeout=0.3)
    head = b'{"query": "What does'

    async def scenario() -> tuple[dict[str, Any], bytes, float]:
        sent: list[dict[str, Any]] = []
        calls = 0

        async def receive() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "http.request", "body": head, "more_body": True}
            await anyio.sleep(60)  # the rest never comes
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        started = time.perf_counter()
        with anyio.fail_after(10):
            await app(_http_scope("/retrieve", head, [(b"content-type", b"application/json"), (b"content-length", b"40")]), receive, send)
        return sent[0], b"".join(m.get("body", b"") for m in sent[1:]), time.perf_counter() - started

    start, body, took = anyio.run(scenario)
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert json.loads(body)["detail"] == "request body not received within 0.3 s (service.body_timeout)"
    assert 0.25 < took < 5


def test_both_content_length_and_transfer_encoding_is_400(tmp_path: Path) -> None:
    app, _, _ = fake_service(tmp_path)
    client = TestClient(app)
    r = client.post("/retrieve", content=b'{"query": "q"}', headers={"Content-Type": "application/json", "Content-Length": "14", "Transfer-Encoding": "chunked"})
    assert r.status_code == 400 and r.headers["connection"] == "close"
    assert r.json()["detail"] == "Content-Length and Transfer-Encoding are both set: send one of them"


@pytest.mark.parametrize("route", ["/retrieve", "/query"])
def test_query_over_the_configured_limit_is_422_naming_it(tmp_path: Path, route: str) -> None:
    app, _, _ = fake_service(tmp_path)
    client = TestClient(app)
    r = client.post(route, json={"query": "ferry " * 700})  # 4,200 characters: over the engine's limit too
    assert r.status_code == 422
    r = client.post(route, json={"query": "x" * 1001})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "query is 1001 characters, the limit is 1000 (service.max_query_chars)"
    assert client.post(route, json={"query": "x" * 1000, "top_k": 1}).status_code == 200
    app, _, _ = fake_service(tmp_path, max_query_chars=50)
    r = TestClient(app).post(route, json={"query": "x" * 51})
    assert r.status_code == 422 and "the limit is 50 (service.max_query_chars)" in r.json()["detail"]


def test_the_schema_states_the_configured_limit(tmp_path: Path) -> None:
    app, _, _ = fake_service(tmp_path, max_query_chars=300, public_docs=True)
    spec = TestClient(app).get("/openapi.json").json()
    for name in ("RetrieveRequest", "QueryRequest"):
        assert spec["components"]["schemas"][name]["properties"]["query"]["maxLength"] == 300
