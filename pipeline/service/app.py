"""``create_app(settings)`` → the FastAPI app: lifespan (open the store once, close it last), routers,
auth, the request middleware, and one mapping from the error tree to HTTP status.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.config import Settings
from pipeline.errors import ConfigError, IngestError, InvalidQuery, PipelineError, QueryError, ShuttingDown, StoreError, fatal_error
from pipeline.service import documents, routes, snapshots
from pipeline.service.deps import ServiceState, require_token
from pipeline.service.middleware import CleanStartupFailure, RequestContext
from pipeline.service.redact import redact_paths

logger = logging.getLogger("pipeline.service")

# First match wins (most specific first). Bad input is 4xx; a store or model the service cannot use
# right now is 503, so probes and load balancers treat it as "not ready", not as a crash.
STATUS_BY_ERROR: tuple[tuple[type[PipelineError], int], ...] = (
    (InvalidQuery, 422),
    (QueryError, 400),
    (IngestError, 422),
    (StoreError, 503),
    (ConfigError, 503),
    (ShuttingDown, 503),
    (PipelineError, 500),
)

DESCRIPTION = """Recursive retrieval with node references over ingested PDFs.

* `POST /retrieve`: the top-k parents for a question (no LLM), as `query --json --retrieve-only`.
* `POST /query`: an LLM answer with its sources; `"stream": true` for server-sent events.
* `POST /ingest` + `GET /jobs/{id}`: ingest files on the server as a background job.
* `GET /documents`, `GET /documents/{name}`, `DELETE /documents/{name}`: what is indexed, by name.
* `POST /snapshots`: a consistent backup of the store while queries go on.
* `GET /healthz` (no token), `/readyz`, `/status`, `/metrics` (Prometheus).

When `PIPELINE_API_TOKEN` is set, every route but `/healthz` needs `Authorization: Bearer <token>`.
Errors are JSON: `{"error": kind, "detail": message, "request_id": id}`.
"""


def status_for(exc: PipelineError) -> int:
    return next(code for cls, code in STATUS_BY_ERROR if isinstance(exc, cls))


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error may echo a client's lone surrogate, which UTF-8 cannot encode."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(request: Request, status: int, error: str, detail: str, headers: dict[str, str] | None = None, **extra: object) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is not None:
        detail = redact_paths(detail, service.settings)
    body: dict[str, object] = {"error": error, "detail": detail, "request_id": request.scope.get("state", {}).get("request_id", "")}
    body.update({k: v for k, v in extra.items() if v is not None})
    return AsciiJSONResponse(body, status_code=status, headers=headers)


async def _pipeline_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PipelineError)
    status = status_for(exc)
    if status >= 500:
        logger.error("%s: %s", type(exc).__name__, exc)
    service = getattr(request.app.state, "service", None)
    # Unavailable now, not broken: a balancer or client retries after this many seconds (a database or Qdrant back up).
    retry = {"Retry-After": str(service.settings.service.retry_after)} if status == 503 and service is not None else None
    return error_response(request, status, type(exc).__name__, str(exc), headers=retry)


# Failures from outside our code that ``fatal_error`` classifies: a Qdrant server that went away after
# the engine was built, a full disk or a permission change under the store, a SQLite error. Each is
# answered with the class the CLI (``output.fatal``) and the SSE stream (``routes._error_event``) give it,
# not as a 500 "internal error".
CLASSIFIED_OUTSIDE_ERRORS: tuple[type[Exception], ...] = (ResponseHandlingException, UnexpectedResponse, OSError, sqlite3.Error)


async def _outside_error(request: Request, exc: Exception) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    error = fatal_error(exc, service.settings.store if service is not None else "the store")
    if error is None:  # not one fatal_error knows: a bug, for the middleware's 500
        raise exc
    return await _pipeline_error(request, error)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The input itself is left out: it can be a 64 KB query, and it would land in client logs.
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return error_response(request, 422, "InvalidRequest", detail, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    try:
        error = HTTPStatus(exc.status_code).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        error = "HTTPError"
    return error_response(request, exc.status_code, error, str(exc.detail), headers=getattr(exc, "headers", None))


def _openapi_with_limits(app: FastAPI, build: Callable[[], dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """The OpenAPI schema with the configured query limit (``service.max_query_chars``) as the query's
    ``maxLength``: the request models carry only the engine's hard limit, fixed at import time."""
    schema = build()
    limit = settings.service.max_query_chars
    for model in schema.get("components", {}).get("schemas", {}).values():
        query = model.get("properties", {}).get("query") if model.get("title") in ("RetrieveRequest", "QueryRequest") else None
        if query is not None and query.get("maxLength") != limit:
            query["maxLength"] = limit
            query["description"] = f"The question (1 to {limit} characters: service.max_query_chars)"
    return schema


def create_app(settings: Settings | None = None, state: ServiceState | None = None) -> FastAPI:
    """The service for one store.

    Args:
        settings: configuration; read from the environment and ``pipeline.toml`` when None.
        state: a prepared ``ServiceState`` (tests pass one with fakes); built from settings when None.

    Example:
        app = create_app(Settings(store=Path("storage")))
        uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    settings = settings or (state.settings if state else Settings())
    service = state or ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await anyio.to_thread.run_sync(service.open)
        except Exception as exc:
            error = fatal_error(exc, settings.store)  # None: a bug, whose traceback uvicorn prints
            if error is not None:
                service.startup_error = f"cannot start the service: {type(error).__name__}: {error}"
            raise
        from pipeline.store.qdrant import location

        qdrant = location(settings)
        logger.info("serving store %s", settings.store.resolve(), extra={"qdrant": qdrant, "auth": settings.service.api_token is not None})
        try:
            yield
        finally:
            logger.info("shutting down: stopping ingest jobs, closing the store")
            await anyio.to_thread.run_sync(service.close)

    app = FastAPI(
        title="pipeline",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    app.openapi = functools.partial(_openapi_with_limits, app, app.openapi, settings)  # type: ignore[method-assign]
    app.add_middleware(
        RequestContext, metrics=service.metrics, max_body_bytes=settings.service.max_body_bytes, body_timeout=settings.service.body_timeout
    )
    app.add_middleware(CleanStartupFailure, reason=lambda: service.startup_error)
    app.add_exception_handler(PipelineError, _pipeline_error)
    for outside in CLASSIFIED_OUTSIDE_ERRORS:
        app.add_exception_handler(outside, _outside_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Without a token the routes declare no security requirement: the schema says what the service does.
    auth = [Depends(require_token)] if settings.service.api_token is not None else []
    app.include_router(routes.public)
    app.include_router(routes.api, dependencies=auth)
    app.include_router(documents.router, dependencies=auth)
    app.include_router(snapshots.router, dependencies=auth)
    app.include_router(routes.docs, dependencies=[] if settings.service.public_docs else auth)
    # The Swagger UI library itself (no data in it) is public, so a browser can load it offline.
    app.mount(routes.DOCS_ASSETS, StaticFiles(directory=routes.swagger_assets_dir()), name="docs-assets")
    return app
