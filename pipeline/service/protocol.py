"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for each request's head.

uvicorn times out only an idle keep-alive connection, and any byte resets that timer: a connection
that never sends anything, or sends its headers a byte every few seconds, is held open for ever (and
with it a file descriptor and a slot in the accept backlog). ``GuardedH11Protocol`` gives every request
head ``service.header_timeout`` seconds, counted from the connection (or the end of the previous
response) to the end of the headers, however the bytes trickle in; then the connection is closed,
with a 408 if the head had started. The body has its own deadline (``service.body_timeout``), kept by
``RequestContext`` where the application reads it.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("pipeline.service")

_BODY = b"request headers not received in time (service.header_timeout)\n"
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_BODY)
    + _BODY
)


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` plus the head deadline; ``header_timeout`` is set by ``guarded_protocol``."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            self._head_bytes += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head arrived: its deadline is met
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.cycle is cycle and not self.transport.is_closing():  # no pipelined request: wait for the next head
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:  # a head that started but did not finish: a slow (or slowloris) client
            client = "%s:%d" % self.client if self.client else "unknown"
            logger.warning("request headers from %s not received within %g s (service.header_timeout): connection closed", client, self.header_timeout)
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def guarded_protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this head deadline (uvicorn builds one
    instance per connection from the class, so the setting travels as a class attribute)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": header_timeout})
