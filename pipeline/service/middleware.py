"""Per request: an id (``X-Request-ID``), a body-size limit and deadline, the refusal of ambiguous
framing, one JSON access-log line, HTTP metrics, and a JSON 500 for the unexpected.

Plain ASGI rather than ``BaseHTTPMiddleware``: streamed answers pass through untouched and the
latency recorded is to the last byte sent. The request id lives in a context variable, so every log
line written while serving the request (worker threads included) carries it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.service.metrics import ServiceMetrics

logger = logging.getLogger("pipeline.service.access")
error_logger = logging.getLogger("pipeline.service")

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
QUIET_ROUTES = {"/healthz", "/readyz", "/metrics"}  # probes and scrapes: access lines at debug level


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records written while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            rid = request_id_var.get()
            if rid:
                record.request_id = rid
        return True


class RedactFilter(logging.Filter):
    """Replaces secrets (the API token) wherever they would appear in a formatted record.

    Nothing logs headers or bodies; this is the second line of defence.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for s in self.secrets:
                message = message.replace(s, "[redacted]")
            record.msg, record.args = message, None
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key not in ("msg", "message") and any(s in value for s in self.secrets):
                for s in self.secrets:
                    value = value.replace(s, "[redacted]")
                setattr(record, key, value)
        return True


class RequestContext:
    """ASGI middleware: request id, body limit (JSON 413), body deadline (JSON 408), a request with both
    ``Content-Length`` and ``Transfer-Encoding`` refused (JSON 400), access log, request metrics, JSON
    500 on an unhandled exception.

    Both framing headers at once is how request smuggling starts: a proxy in front may frame the body
    by one and this server (h11 accepts it, framing by ``Transfer-Encoding``) by the other. RFC 9112
    lets a server refuse it; the connection is closed after the 400 so no leftover bytes are read as a
    next request. The body deadline (``service.body_timeout``, from the headers to the last body
    byte) keeps a client that trickles its body from holding a worker; 408 also closes the connection.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_body_bytes: int, body_timeout: float | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_request_id(scope) or uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), rid.encode())]
            await send(message)

        async def receive_limited() -> Message:
            nonlocal received, body_done
            if body_done or self.body_timeout is None:  # e.g. a stream listening for the client to leave
                message = await receive()
            else:
                with anyio.move_on_after(max(0.0, started + self.body_timeout - time.perf_counter())) as waited:
                    message = await receive()
                if waited.cancelled_caught:
                    raise HTTPException(status_code=408, detail=too_slow, headers={"Connection": "close"})
                body_done = message["type"] != "http.request" or not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:  # a chunked body with no Content-Length
                raise HTTPException(status_code=413, detail=too_large)
            return message

        received = 0
        body_done = False
        too_large = f"request body larger than {self.max_body_bytes} bytes (service.max_body_bytes)"
        too_slow = f"request body not received within {self.body_timeout:g} s (service.body_timeout)" if self.body_timeout else ""
        self.metrics.in_flight.inc()
        try:
            if _header(scope, b"content-length") is not None and _header(scope, b"transfer-encoding") is not None:
                detail = "Content-Length and Transfer-Encoding are both set: send one of them"
                body = {"error": "BadRequest", "detail": detail, "request_id": rid}
                await _send_json(send_with_id, 400, body, close=True)
            elif _content_length(scope) > self.max_body_bytes:
                await _send_json(send_with_id, 413, {"error": "RequestEntityTooLarge", "detail": too_large, "request_id": rid})
            else:
                await self.app(scope, receive_limited, send_with_id)
        except Exception:
            error_logger.exception("unhandled error on %s %s", scope["method"], scope["path"], extra={"request_id": rid})
            if response_started:
                raise  # mid-stream: the server closes the connection
            detail = f"internal error: see the service log for request {rid}"
            await _send_json(send_with_id, 500, {"error": "InternalError", "detail": detail, "request_id": rid})
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            seconds = time.perf_counter() - started
            labels = {"route": route, "method": scope["method"], "status": str(status)}
            self.metrics.requests.labels(**labels).inc()
            self.metrics.request_seconds.labels(**labels).observe(seconds)
            level = logging.DEBUG if route in QUIET_ROUTES and status < 500 else logging.INFO
            logger.log(
                level,
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "request_id": rid,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
            request_id_var.reset(token)


class CleanStartupFailure:
    """ASGI middleware for the lifespan: a startup that fails for a reason the operator can fix (the
    store is not a folder, not writable, locked) is reported as one line naming it, not as the traceback
    Starlette puts in ``lifespan.startup.failed`` (which uvicorn prints). ``reason()`` returns that line,
    set by the app's lifespan when it caught such an error; None (a bug) keeps the traceback."""

    def __init__(self, app: ASGIApp, reason: Callable[[], str | None]) -> None:
        self.app = app
        self.reason = reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_clean(message: Message) -> None:
            reason = self.reason()
            if message["type"] == "lifespan.startup.failed" and reason:
                message = {**message, "message": reason}
            await send(message)

        await self.app(scope, receive, send_clean)


async def _send_json(send: Send, status: int, obj: dict[str, object], close: bool = False) -> None:
    body = json.dumps(obj).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the server closes the connection after this response
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def _content_length(scope: Scope) -> int:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _incoming_request_id(scope: Scope) -> str | None:
    """A caller's ``X-Request-ID`` if it is short and plain (it ends up in logs), else None."""
    for key, value in scope.get("headers", []):
        if key == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1")
            return text if _VALID_REQUEST_ID.match(text) else None
    return None
