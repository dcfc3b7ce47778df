"""Issue 21, point 7 over a real socket: uvicorn as ``serve`` configures it (``uvicorn_config``), on a
store-less app. Idle and slow request heads are cut off after ``service.header_timeout``; a request
with both Content-Length and Transfer-Encoding is refused (h11 alone accepts it and frames by the
Transfer-Encoding)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from pipeline.service.command import uvicorn_config
from tests.unit.service.fakes import fake_service

HEADER_TIMEOUT = 0.6


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    app, state, _ = fake_service(tmp_path, header_timeout=HEADER_TIMEOUT, port=0)
    config = uvicorn_config(app, state.settings)
    config.lifespan = "off"  # no store to open
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    host, port = srv.servers[0].sockets[0].getsockname()[:2]
    try:
        yield host, port
    finally:
        srv.should_exit = True
        thread.join(10)


def read_all(sock: socket.socket, limit: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (seconds from now)."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    while True:
        chunk = sock.recv(65536)  # socket.timeout (the test fails) if the server never closes
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def test_a_normal_request_and_keep_alive_still_work(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.1)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_an_idle_connection_is_closed_after_the_header_timeout(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        data, took = read_all(sock)
    assert data == b"" and HEADER_TIMEOUT * 0.8 < took < HEADER_TIMEOUT + 2


def test_a_trickled_request_head_gets_408_however_often_bytes_arrive(server: tuple[str, int]) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
    with socket.create_connection(server) as sock:
        started = time.monotonic()
        try:
            for byte in head:  # a byte every 50 ms: each one used to reset uvicorn's only timer
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:  # the server closed the connection while we were still sending
            pass
        data, _ = read_all(sock)
        took = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data
    assert b"service.header_timeout" in data
    assert took < HEADER_TIMEOUT + 2


def test_content_length_with_transfer_encoding_is_refused(server: tuple[str, int]) -> None:
    smuggled = (
        b"POST /retrieve HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"e\r\n{\"query\": \"q\"}\r\n0\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    with socket.create_connection(server) as sock:
        sock.sendall(smuggled)
        data, _ = read_all(sock)
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert b"Content-Length and Transfer-Encoding are both set" in data
    assert data.count(b"HTTP/1.1 ") == 1  # closed after the 400: nothing after it is read as a request
