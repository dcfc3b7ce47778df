"""Per request: an id (``X-Request-ID``), a body-size limit, one JSON access-log line, HTTP metrics, and a
JSON 500 for the unexpected.

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
from collections.abc import Iterable
from contextvars import ContextVar

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
    """ASGI middleware: request id, body limit (JSON 413), access log, request metrics, JSON 500 on an
    unhandled exception."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

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
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:  # a chunked body with no Content-Length
                raise HTTPException(status_code=413, detail=too_large)
            return message

        received = 0
        too_large = f"request body larger than {self.max_body_bytes} bytes (service.max_body_bytes)"
        self.metrics.in_flight.inc()
        try:
            if _content_length(scope) > self.max_body_bytes:
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


async def _send_json(send: Send, status: int, obj: dict[str, object]) -> None:
    body = json.dumps(obj).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
