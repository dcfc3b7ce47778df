"""HTTP routes: /retrieve /query /ingest /jobs/{id} (GET, DELETE) /healthz /readyz /status /metrics (+ /docs).

Retrieval and generation run in worker threads (the engine is synchronous); the event loop only
validates, schedules and streams. ``public`` needs no token; ``api`` and ``docs`` are mounted behind
``require_token`` by ``create_app``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from pipeline.errors import InvalidQuery, fatal_error
from pipeline.ingest.scan import ScanLimits, under
from pipeline.models import Answer
from pipeline.retrieve.engine import Engine
from pipeline.retrieve.extract import answer_mode_for
from pipeline.retrieve.grounding import Replaced
from pipeline.service.deps import GenerationSlot, ServiceState, get_engine, get_state
from pipeline.service.middleware import request_id_var
from pipeline.service.redact import redact_paths
from pipeline.service.schemas import ANSWER_EXAMPLE, API_RESPONSES, ErrorBody, IngestJob, IngestRequest, QueryRequest, Readiness, RetrieveRequest
from pipeline.service.documents import scoped_filters
from pipeline.store.documents import name_sources
from pipeline.store.status import store_status

logger = logging.getLogger(__name__)

StateDep = Annotated[ServiceState, Depends(get_state)]

public = APIRouter()
api = APIRouter(responses=API_RESPONSES)
docs = APIRouter()

INVALID = {422: {"model": ErrorBody, "description": "Invalid input: empty or oversized query, top_k out of range, unknown mode or filter"}}
FORBIDDEN = {403: {"model": ErrorBody, "description": "POST /ingest is off: service.ingest_roots is not set"}}
PATH_CHECK_SECONDS = 5.0  # POST /ingest waits at most this long for the file system (realpath, stat)
BUSY_FS = {503: {"model": ErrorBody, "description": "The server's file system did not answer the path checks within 5 s"}}
NOT_FOUND = {404: {"model": ErrorBody, "description": "No such job (jobs are kept in memory, the last 100)"}}
MAX_LISTED = 100  # /status lists at most this many failed or pending documents (and says how many there are)
JobId = Annotated[str, PathParam(max_length=64, description="The job id from POST /ingest (32 hex digits)")]
UNAVAILABLE = {503: {"model": ErrorBody, "description": "Store not ready (nothing ingested, Qdrant down, other embedding model) or no LLM"}}
SSE_EXAMPLE = (
    'event: token\ndata: {"text": "S2ORC is"}\n\n'
    'event: token\ndata: {"text": " a corpus"}\n\n'
    'event: sources\ndata: {"query": "What is S2ORC?", "answer": "S2ORC is a corpus ...", "sources": [...], "stats": {...}}\n\n'
)


@public.get("/healthz", summary="Liveness: the process answers", response_model=dict[str, str])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@api.post(
    "/retrieve",
    response_model=Answer,
    summary="Top-k parents for a question (no LLM)",
    description="The same object as `python -m pipeline query --json --retrieve-only`: only the query is embedded.",
    responses={200: {"content": {"application/json": {"example": ANSWER_EXAMPLE}}}, **INVALID, **UNAVAILABLE},
)
async def retrieve(body: RetrieveRequest, state: StateDep) -> Answer:
    check_query_length(body.query, state)
    engine = await get_engine(state)
    catalog, filters = await anyio.to_thread.run_sync(scoped_filters, state, body.filter_dict())  # a document name → its doc_id
    call = functools.partial(engine.retrieve, body.query, body.mode, body.top_k, filters, body.rerank, min_confidence=body.min_confidence)
    answer = await anyio.to_thread.run_sync(call, limiter=state.retrieval_limiter)
    name_sources(answer, catalog)
    state.metrics.observe_answer(answer)
    return answer


@api.post(
    "/query",
    response_model=Answer,
    summary="Answer a question with the LLM, citing the parents it used",
    description=(
        "With `stream: true` the answer comes as server-sent events: `token` events (`{\"text\": ...}`) as the "
        "LLM writes, then one `sources` event holding the complete answer object (answer, sources, stats). "
        "If the LLM text is not supported by its sources, a `replaced` event (`{\"reason\", \"answer\"}`) comes before "
        "`sources`, whose `answer` and `answer_mode` are then the extract's: the final event always says what to show. "
        "A result with `answerable: false` (confidence below `min_confidence`, or another language) has no answer and asks no LLM. "
        "A failure after the stream started arrives as an `error` event. At most "
        "`service.max_concurrent_generations` LLM answers are generated at once; beyond that: 429 with Retry-After. "
        "Extractive answers (`answer: extractive`, or auto without a capable LLM) and `answer: none` take no "
        "generation slot: they run as concurrently as /retrieve."
    ),
    responses={
        200: {"content": {"application/json": {"example": {**ANSWER_EXAMPLE, "answer": "S2ORC is a large corpus of ..."}}, "text/event-stream": {"example": SSE_EXAMPLE}}},
        **INVALID,
        429: {"model": ErrorBody, "description": "Every generation slot is busy; retry after the Retry-After seconds"},
        **UNAVAILABLE,
    },
)
async def query(body: QueryRequest, state: StateDep) -> Any:
    check_query_length(body.query, state)
    generate = answer_mode_for(state.settings, body.answer) == "llm"
    if generate:  # an extract needs no generator
        state.require_llm()
    engine = await get_engine(state)
    # Only LLM generation takes a slot; an extract or sources only cost what /retrieve costs, in its threads.
    slot = await state.generations.acquire() if generate else None
    limiter = None if generate else state.retrieval_limiter
    catalog, filters = await anyio.to_thread.run_sync(scoped_filters, state, body.filter_dict())  # a document name → its doc_id
    args = (body.query, body.mode, body.top_k, filters, body.answer, body.rerank, body.min_confidence)
    if body.stream:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return AnswerStream(_answer_events(state, engine, args, slot, limiter), slot, media_type="text/event-stream", headers=headers)
    try:
        answer = await anyio.to_thread.run_sync(functools.partial(engine.query, *args), limiter=limiter)
    finally:
        if slot is not None:
            slot.release()
    name_sources(answer, catalog)
    state.metrics.observe_answer(answer)
    return answer


def check_query_length(query: str, state: ServiceState) -> None:
    """422 for a query over ``service.max_query_chars``: a query's cost grows with its length (the
    schema's own cap, 4,000, is the engine's hard limit; this one is the operator's)."""
    limit = state.settings.service.max_query_chars
    if len(query) > limit:
        raise InvalidQuery(f"query is {len(query)} characters, the limit is {limit} (service.max_query_chars)")


class AnswerStream(StreamingResponse):
    """Releases the generation slot as soon as the client leaves (Starlette hears ``http.disconnect``
    while it streams), not when the LLM thread next yields a token, which may be many seconds later
    with a long prompt: the next answer can start at once. Also released when the response ends, even
    if the client left before it started."""

    def __init__(self, content: AsyncIterator[str], slot: GenerationSlot | None, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        slot = self.slot

        async def watch_disconnect() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect" and slot is not None:
                slot.release()
            return message

        try:
            await super().__call__(scope, watch_disconnect, send)
        finally:
            if slot is not None:
                slot.release()


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"  # data is one line of JSON


async def _answer_events(
    state: ServiceState, engine: Engine, args: tuple[Any, ...], slot: GenerationSlot | None, limiter: anyio.CapacityLimiter | None
) -> AsyncIterator[str]:
    """``token`` events, a ``replaced`` event if the LLM text was replaced, then ``sources``; each step of the engine's generator runs in a worker thread
    (``limiter``'s for an extract, like /retrieve; the default pool while an LLM writes)."""
    stream = engine.stream_query(*args)
    try:
        while True:
            item = await anyio.to_thread.run_sync(_next_or_done, stream, limiter=limiter)
            if item is _DONE:
                break
            if isinstance(item, Answer):
                state.metrics.observe_answer(item)
                yield _event("sources", item.model_dump_json())
            elif isinstance(item, Replaced):  # the streamed LLM text is withdrawn: say why, then the final answer
                yield _event("replaced", json.dumps({"reason": item.reason, "answer": item.answer}, ensure_ascii=False))
            else:
                yield _event("token", json.dumps({"text": item}, ensure_ascii=False))
    except Exception as exc:
        yield _error_event(state, exc)
    finally:
        if slot is not None:
            slot.release()
        stream.close()  # a client that left mid-answer: stop the LLM stream too


def _error_event(state: ServiceState, exc: Exception) -> str:
    """The SSE renderer of a failure after the stream started: the class the CLI (``output.fatal``) and
    the HTTP handlers (``app.py``) give the same failure, by the same ``fatal_error`` (a Qdrant
    response error is ``StoreUnavailable`` in all three); anything it does not know is a bug."""
    error = fatal_error(exc, state.settings.store)
    if error is None:
        logger.exception("stream failed", exc_info=exc)
        detail = f"internal error: see the service log for request {request_id_var.get()}"
        return _event("error", json.dumps({"error": "InternalError", "detail": detail, "request_id": request_id_var.get()}))
    logger.warning("stream stopped: %s: %s", type(error).__name__, error)
    detail = redact_paths(str(error), state.settings)
    return _event("error", json.dumps({"error": type(error).__name__, "detail": detail, "request_id": request_id_var.get()}))


_DONE = object()


def _next_or_done(stream: Iterator[Any]) -> Any:
    """The stream's next item, or ``_DONE`` (``StopIteration`` cannot cross a thread boundary)."""
    return next(stream, _DONE)


@api.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: store reachable, collections hold this embedding model, models loaded",
    responses={503: {"model": Readiness, "description": "Not ready; `reasons` says why"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    ready, checks, reasons = await anyio.to_thread.run_sync(state.readiness)

    def clean(text: str) -> str:
        return redact_paths(text, state.settings)

    body = Readiness(ready=ready, checks={k: clean(v) for k, v in checks.items()}, reasons=[clean(r) for r in reasons])
    retry = None if ready else {"Retry-After": str(state.settings.service.retry_after)}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=retry)


@api.get(
    "/status",
    summary="What the store holds (as `python -m pipeline status --json`)",
    response_model=dict[str, Any],
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "store": "/data/store",
                        "qdrant": "embedded:/data/store/qdrant",
                        "collections": {"docs_children": 363, "docs_summaries": 0, "docs_questions": 0},
                        "parents": 20,
                        "documents": 1,
                        "pending_documents": [],
                        "embed_model": "all-MiniLM-L6-v2-int8",
                        "embed_dim": 384,
                    }
                }
            }
        },
        **UNAVAILABLE,
    },
)
async def status(state: StateDep) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        engine = state.current_engine
        return store_status(state.settings, client=state.client(), parents=engine.store.parents if engine else None)

    return public_status(await anyio.to_thread.run_sync(read), state.settings.qdrant.url is not None)


def public_status(info: dict[str, Any], server: bool) -> dict[str, Any]:
    """``status --json`` without the server's own paths (store folder, Qdrant folder or URL) and with
    long lists cut to ``MAX_LISTED`` entries (a folder of 10,000 bad files must not make a 2 MB answer)."""
    info = dict(info)
    info["store"] = Path(info["store"]).name
    info["qdrant"] = "server" if server else "embedded"
    failed = info.get("failed_documents") or {}
    pending = info.get("pending_documents") or []
    info["failed_documents_total"] = len(failed)
    info["pending_documents_total"] = len(pending)
    info["failed_documents"] = dict(sorted(failed.items())[:MAX_LISTED])
    info["pending_documents"] = sorted(pending)[:MAX_LISTED]
    return info


@api.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)
async def metrics(state: StateDep) -> Response:
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)


@api.post(
    "/ingest",
    status_code=202,
    response_model=IngestJob,
    summary="Ingest files or folders on the server as a background job",
    description=(
        "Runs `python -m pipeline ingest` in the service, on its open store: the way to ingest into an embedded "
        "store the service owns. Poll `GET /jobs/{id}`; new documents are searchable as soon as each is written."
    ),
    responses={**FORBIDDEN, **INVALID, **BUSY_FS},
)
async def ingest(body: IngestRequest, state: StateDep, response: Response) -> IngestJob:
    cfg = state.settings.service
    if not cfg.ingest_roots:
        raise HTTPException(
            status_code=403,
            detail="POST /ingest is off: set service.ingest_roots to the folders it may read "
            "(env PIPELINE_SERVICE__INGEST_ROOTS='[\"/data/docs\"]')",
        )
    paths = body.path_list()
    # Bounded: a hung network file system must not hold the request (the thread is left to end on its own).
    with anyio.move_on_after(PATH_CHECK_SECONDS) as waited:
        problems = await anyio.to_thread.run_sync(check_ingest_paths, paths, state.ingest_limits(), abandon_on_cancel=True)
    if waited.cancelled_caught:
        logger.warning("ingest refused: the path checks took over %g s", PATH_CHECK_SECONDS)
        raise HTTPException(
            status_code=503,
            detail=f"the server's file system did not answer the path checks within {PATH_CHECK_SECONDS:g} s; retry later",
            headers={"Retry-After": "30"},
        )
    if problems:
        logger.warning("ingest refused: %s", "; ".join(problems))  # e.g. a probe for files outside the roots
        raise HTTPException(status_code=422, detail="; ".join(problems))
    job = state.jobs.submit(paths, body.prune)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


def check_ingest_paths(paths: list[Path], limits: ScanLimits) -> list[str]:
    """Why these paths cannot be ingested (empty: they can): outside the roots after resolving
    symlinks, or missing. Messages name the client's own path, never the roots or what a symlink
    points to.

    Only cheap checks that open nothing (``realpath``, ``stat``: a FIFO cannot block them): walking the
    folders, reading ``.pipelineignore`` and counting files against ``service.ingest_max_files`` happen
    in the job, which fails with "over limit" when there are too many.
    """
    problems = []
    for path in paths:
        try:
            real = Path(os.path.realpath(path))
            if not under(real, limits.roots):
                problems.append(f"{path}: outside service.ingest_roots")
            elif not os.path.exists(real):
                problems.append(f"{path}: no such file or folder on the server")
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: cannot be used ({type(exc).__name__})")
    return problems


@api.get("/jobs/{job_id}", response_model=IngestJob, summary="An ingest job's state, progress and report", responses={**NOT_FOUND})
async def job(job_id: JobId, state: StateDep) -> IngestJob:
    found = state.jobs.get(job_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id} (jobs are kept in memory, the last 100)")
    return found


@api.delete(
    "/jobs/{job_id}",
    response_model=IngestJob,
    summary="Cancel an ingest job",
    description=(
        "A queued job is cancelled at once (200). A running job stops at its next file or parent (202, "
        "`cancel_requested: true`; poll `GET /jobs/{id}`): documents finished before stay, a half-processed one "
        "is not written. If it has not stopped after `service.ingest_stop_timeout` seconds it is abandoned: marked "
        "`cancelled` and the next job starts. A finished job is returned unchanged (200)."
    ),
    responses={202: {"model": IngestJob, "description": "Running: asked to stop"}, **NOT_FOUND},
)
async def cancel_job(job_id: JobId, state: StateDep, response: Response) -> IngestJob:
    found = state.jobs.cancel(job_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id} (jobs are kept in memory, the last 100)")
    if found.state.value == "running":
        response.status_code = 202
    return found


@docs.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


DOCS_ASSETS = "/docs/assets"  # Swagger UI's JS and CSS, served from the installed package: /docs works offline


def swagger_assets_dir() -> Path:
    """The static folder of the pinned ``swagger-ui-py`` package (Swagger UI 5, which reads OpenAPI 3.1).

    Found without importing the package (its ``__init__`` pulls in jinja2 and yaml for features not used).
    """
    import importlib.util

    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: `pip install swagger-ui-py` (a dependency of pipeline)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@docs.get("/docs", include_in_schema=False)
async def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{request.app.title} — API docs",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
    )
