"""Issue 21, point 6, the service side: no server path in job errors, redaction at path-component
boundaries only, job files with undecodable names, and a store that cannot be served is one clear
line and exit 2, never a traceback."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pipeline.config import Settings
from pipeline.errors import StoreLocked
from pipeline.ingest.run import ProgressFn
from pipeline.models import FileResult, IngestReport, IngestStats
from pipeline.service.redact import redact_paths
from tests.unit.service.fakes import fake_service


def finished(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        if r.json()["state"] in ("succeeded", "failed", "cancelled"):
            return r.json()
        time.sleep(0.02)
    raise AssertionError("job did not finish")


class TestRedaction:
    def test_only_whole_paths_are_replaced(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        settings = Settings(store=tmp_path / "store", service={"ingest_roots": [root]})
        # A neighbour of the root is the client's own path: rewritten, it would spell out the root's name.
        assert redact_paths(f"{root}-evil/x.pdf: outside service.ingest_roots", settings) == f"{root}-evil/x.pdf: outside service.ingest_roots"
        assert redact_paths(f"{root}.bak/x.pdf: no such file", settings) == f"{root}.bak/x.pdf: no such file"
        assert redact_paths(f"/mnt{root}/x.pdf", settings) == f"/mnt{root}/x.pdf"
        assert redact_paths(f"{root}/x.pdf: encrypted", settings) == "<ingest root>/x.pdf: encrypted"
        assert redact_paths(f"nothing at {root}.", settings) == "nothing at <ingest root>."
        assert redact_paths(f"'{tmp_path / 'store'}' (lock {tmp_path / 'store'}/ingest.lock)", settings) == "'<store>' (lock <store>/ingest.lock)"


class TestJobs:
    def test_a_job_error_names_no_server_path(self, tmp_path: Path) -> None:
        app, state, _ = fake_service(tmp_path, ingest_roots=[tmp_path / "docs"])
        store = state.settings.store.absolute()

        def locked(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            raise StoreLocked(f"another ingest is writing to {store} (lock {store}/ingest.lock): wait for it")

        state.jobs.ingest = locked
        client = TestClient(app)
        try:
            job = finished(client, state.jobs.submit([tmp_path / "docs"], False).id)
        finally:
            state.jobs.shutdown()
        assert job["state"] == "failed"
        assert job["error"] == "StoreLocked: another ingest is writing to <store> (lock <store>/ingest.lock): wait for it"
        assert str(store) not in client.get(f"/jobs/{job['id']}").text  # (its paths are the client's own)

    def test_a_crash_is_named_without_its_text_and_undecodable_names_do_not_500(self, tmp_path: Path) -> None:
        app, state, _ = fake_service(tmp_path, ingest_roots=[tmp_path / "docs"])
        odd = str(tmp_path / "docs" / "caf\udce9.txt")  # the name's bytes are Latin-1, not UTF-8

        def report_then_crash(paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
            progress("file", {"path": odd, "total": 2})
            if prune:
                raise UnicodeEncodeError("utf-8", odd, len(odd) - 5, len(odd) - 4, "surrogates not allowed")
            files = [FileResult(path=odd, status="failed", reason=f"skipped: {odd} is not UTF-8")]
            return IngestReport(store="store", stats=IngestStats(files_failed=1), files=files)

        state.jobs.ingest = report_then_crash
        client = TestClient(app)
        try:
            done = finished(client, state.jobs.submit([tmp_path / "docs"], False).id)
            crashed = finished(client, state.jobs.submit([tmp_path / "docs"], True).id)
            assert client.delete(f"/jobs/{crashed['id']}").status_code == 200
        finally:
            state.jobs.shutdown()
        assert done["state"] == "succeeded" and done["report"]["files"][0]["path"].endswith("/caf\\xe9.txt")
        assert done["progress"]["current"].endswith("/caf\\xe9.txt")
        assert crashed["state"] == "failed"
        assert crashed["error"] == f"internal error (UnicodeEncodeError): see the service log for job {crashed['id']}"


class TestStartup:
    def test_a_store_that_cannot_open_is_one_line_not_a_traceback(self, tmp_path: Path) -> None:
        app, state, _ = fake_service(tmp_path)

        def cannot_open() -> None:
            raise NotADirectoryError(20, "Not a directory", str(tmp_path / "store" / "edge"))

        state.open = cannot_open  # type: ignore[method-assign]

        async def lifespan() -> list[dict[str, Any]]:
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "lifespan.startup"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            with pytest.raises(NotADirectoryError):
                await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
            return sent

        sent = anyio.run(lifespan)
        assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
        assert sent[0]["message"] == f"cannot start the service: StoreUnavailable: {tmp_path / 'store' / 'edge'}: Not a directory: check the file and its file system"

    def test_serve_on_a_file_or_an_unwritable_folder_exits_2(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from pipeline.cli import app

        a_file = tmp_path / "store.txt"
        a_file.write_text("not a store")
        result = CliRunner().invoke(app, ["serve", "--store", str(a_file), "--port", "0"], terminal_width=300)
        assert result.exit_code == 2, result.output
        assert f"StoreUnavailable: --store {a_file} is not a folder" in result.output and "Traceback" not in result.output

        readonly = tmp_path / "readonly"
        readonly.mkdir()
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == readonly and mode & os.W_OK else real_access(p, mode))  # root writes anywhere
        result = CliRunner().invoke(app, ["serve", "--store", str(readonly), "--port", "0"], terminal_width=300)
        assert result.exit_code == 2, result.output
        assert f"--store {readonly}: the store folder is not writable by this user" in result.output
