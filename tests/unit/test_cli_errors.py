"""Issue 21, point 6: inputs that used to end in ``InternalError … (a bug)`` or a silent exit 0 are clear
errors with exit 2, refused before any store is opened or model loaded."""

from __future__ import annotations

import errno
import io
import json
import logging
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline import output
from pipeline.cli import app


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env, terminal_width=300)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["\udcff\udcfe"], "the query is not valid UTF-8 text ('\\xff\\xfe')"),  # argv b'\xff\xfe' under surrogateescape
        (["ferry", "--doc-id", "/data/\udcff.pdf"], "--doc-id is not valid UTF-8 text ('/data/\\xff.pdf')"),
    ],
)
def test_invalid_utf8_query_or_doc_id_is_invalid_query(tmp_path: Path, args: list[str], needle: str) -> None:
    store = tmp_path / "store"
    code, text = run("query", *args, "--store", str(store))
    assert code == 2, text
    assert f"InvalidQuery: {needle}" in text and "a bug" not in text
    assert not store.exists()


def test_query_over_the_length_limit_is_refused_naming_the_setting(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, text = run("query", "ferry " * 200, "--store", str(store))
    assert code == 2 and "InvalidQuery: the query is 1200 characters, the limit is 1000 (service.max_query_chars)" in text, text
    code, text = run("query", "ferry " * 20, "--store", str(store), env={"PIPELINE_SERVICE__MAX_QUERY_CHARS": "50"})
    assert code == 2 and "the limit is 50 (service.max_query_chars)" in text, text
    assert not store.exists()


def test_chunk_overlap_larger_than_a_chunk_is_a_config_error(tmp_path: Path) -> None:
    from pipeline.config import Settings

    with pytest.raises(ValueError, match=r"ingest.chunk_overlap \(600\) must be smaller than every child chunk size"):
        Settings(ingest={"chunk_overlap": 600})
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The ferry carries bicycles. " * 50)
    code, text = run("ingest", str(docs), "--store", str(tmp_path / "store"), env={"PIPELINE_INGEST__CHUNK_OVERLAP": "600"})
    assert code == 2 and "ConfigError: configuration error" in text and "ingest.chunk_overlap (600)" in text, text
    assert not (tmp_path / "store").exists()


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    code, text = run("status", "--store", str(tmp_path / "store"), env={"PIPELINE_CONFIG": str(missing)})
    assert code == 2, text
    assert f"PIPELINE_CONFIG names {missing}, which does not exist" in text
    code, text = run("status", "--store", str(tmp_path / "store"), env={"PIPELINE_CONFIG": str(tmp_path)})
    assert code == 2 and "which is not a file" in text, text


def test_log_file_that_takes_no_bytes_fails_before_the_command(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The ferry carries bicycles. " * 50)
    code, text = run("ingest", str(docs), "--store", str(tmp_path / "store"), "--log-file", "/dev/full")
    assert code == 2, text
    assert "ConfigError: --log-file /dev/full: cannot write it (No space left on device)" in text
    assert "Logging error" not in text and "Traceback" not in text
    assert not (tmp_path / "store").exists()


class _FullStream(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_log_file_that_fills_up_later_makes_the_exit_status_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline import cli

    handler = output.LogFileHandler(tmp_path / "run.jsonl")
    handler.stream.close()
    handler.stream = _FullStream()
    monkeypatch.setattr(output, "_log_handlers", [handler])
    record = logging.LogRecord("pipeline", logging.INFO, __file__, 0, "ingesting %s", ("a.pdf",), None)
    handler.emit(record)
    handler.emit(record)  # reported once, not once per line
    assert output.log_file_failure() == f"--log-file {tmp_path / 'run.jsonl'}: cannot write it (No space left on device)"

    def finished_fine() -> None:
        raise SystemExit(0)

    monkeypatch.setattr(cli, "app", finished_fine)
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 2


def test_error_type_is_passed_not_parsed_from_the_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.errors import StoreUnavailable

    monkeypatch.setattr(output, "json_requested", lambda: True)
    with pytest.raises(typer.Exit):
        output.fail("Qdrant: unreachable at the given URL")  # a message that happens to start with "Word: "
    assert json.loads(capsys.readouterr().out)["error"] == {"type": "PipelineError", "message": "Qdrant: unreachable at the given URL"}
    with pytest.raises(typer.Exit):
        output.fatal(StoreUnavailable("Docstore: cannot open"))
    assert json.loads(capsys.readouterr().out)["error"] == {"type": "StoreUnavailable", "message": "Docstore: cannot open"}


def test_store_locked_is_adapted_by_its_fields_not_by_editing_its_text() -> None:
    from pipeline.errors import StoreLocked

    exc = StoreLocked.open_elsewhere("embedded Qdrant (edge) at s/edge")
    assert "(a running `pipeline serve`?)" in str(exc) and "send the job to the service (POST /ingest)" in str(exc)
    known = exc.advise("ask the service instead (GET /status)").held_by("pid 7: python -m pipeline serve")
    assert "ask the service instead (GET /status)" in str(known) and "POST /ingest" not in str(known)
    assert str(known).endswith("Held by pid 7: python -m pipeline serve.") and "serve`?" not in str(known)
    assert known.holders == "pid 7: python -m pipeline serve" and known.what == exc.what


def test_a_qdrant_response_error_is_store_unavailable_for_cli_and_service_alike() -> None:
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    from pipeline.errors import StoreUnavailable, fatal_error
    from pipeline.service.app import status_for

    for exc in (UnexpectedResponse(500, "Internal Server Error", b"boom", httpx.Headers()), ResponseHandlingException(ConnectionError("refused"))):
        error = fatal_error(exc)
        assert isinstance(error, StoreUnavailable), exc  # the CLI called the first one "InternalError ... a bug"
        assert status_for(error) == 503


def _failures() -> list[tuple[BaseException, str]]:
    import httpx
    from qdrant_client.http.exceptions import UnexpectedResponse

    from pipeline.errors import QueryError, StoreLocked

    return [
        (UnexpectedResponse(500, "Internal Server Error", b"boom", httpx.Headers()), "StoreUnavailable"),
        (QueryError("LLM failed to answer (APIConnectionError: Connection error.)"), "QueryError"),
        (StoreLocked.open_elsewhere("embedded Qdrant (edge) at s/edge"), "StoreLocked"),
        (OSError(errno.ENOSPC, "No space left on device", "store/docstore.sqlite"), "DiskFull"),  # was a 500 over HTTP
    ]


@pytest.mark.parametrize(("failure", "kind"), _failures(), ids=["qdrant-response", "llm", "store-locked", "disk-full"])
def test_the_same_failure_has_the_same_class_in_the_cli_http_and_sse(
    failure: BaseException, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 24, point 5: one classification (``errors.fatal_error``), one renderer per front end.
    The engine is a stand-in: a Qdrant server answering 500 mid-query cannot be caused in a unit test."""
    from collections.abc import Iterator
    from typing import Any

    from fastapi.testclient import TestClient

    from tests.unit.service.fakes import FakeEngine, fake_service
    from tests.unit.service.test_stream_replaced import events

    class FailingEngine(FakeEngine):
        def query(self, *args: Any, **kwargs: Any) -> Any:
            raise failure

        def stream_query(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            yield "The"
            raise failure

    monkeypatch.setattr(output, "json_requested", lambda: True)
    with pytest.raises(typer.Exit):
        output.fatal(failure)
    cli_kind = json.loads(capsys.readouterr().out)["error"]["type"]

    app, _, _ = fake_service(tmp_path, FailingEngine())
    client = TestClient(app)
    r = client.post("/query", json={"query": "How many papers are in S2ORC?", "answer": "llm"})
    got = events(client.post("/query", json={"query": "How many papers are in S2ORC?", "answer": "llm", "stream": True}).text)
    assert got[0] == ("token", {"text": "The"}) and got[-1][0] == "error"
    assert (cli_kind, r.json()["error"], got[-1][1]["error"]) == (kind, kind, kind)
    assert r.status_code == (400 if kind == "QueryError" else 503)
