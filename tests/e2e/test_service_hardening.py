"""The service under the inputs of issues 9 and 21, in-process on a real store: symlink escapes (also
swapped in between the job's scan and its read), hard links, FIFOs (also as .pipelineignore), odd path
text and file names, 10,000 files, loose JSON types, cancellation, and what responses may reveal.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.config import Settings
from pipeline.ingest.run import Ingestor
from pipeline.providers.embeddings import build_embedder
from pipeline.service.app import create_app
from pipeline.service.deps import ServiceState
from tests.e2e.conftest import copy_store, wait_for_job

pytestmark = pytest.mark.e2e

NO_LLM: dict[str, Any] = {"llm": {"provider": "none"}, "ingest": {"enrich": False}}
FERRY = "The Quillmoor ferry carries exactly 417 bicycles across Lake Vantor every morning. "
SECRET = "root:x:0:0:the-walrus-bone-secret-of-osric:/root:/bin/bash"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    base = tmp_path_factory.mktemp("hardening")
    seed = base / "seed"
    seed.mkdir()
    (seed / "ferry.txt").write_text(FERRY * 20)
    settings = Settings(store=base / "store", **NO_LLM)
    assert Ingestor(settings).run([seed]).stats.files_added == 1  # its own embedder: the service's counts stay 0
    return settings.store, build_embedder(settings)


@pytest.fixture()
def layout(tmp_path: Path) -> Path:
    """tmp/docs (the ingest root) with one document; tmp/secret.txt outside it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "violin.txt").write_text("Copper violins from Brenhaven are tuned with walrus-bone pegs. " * 20)
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    return docs


@pytest.fixture()
def client(built: tuple[Path, Any], layout: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    store, embedder = built
    service = {"ingest_roots": [layout], "ingest_max_files": 1000, "ingest_stop_timeout": 2.0, **getattr(request, "param", {})}
    cfg = Settings(store=copy_store(store, tmp_path / "store"), service=service, **NO_LLM)
    state = ServiceState(cfg, embedder=embedder)
    state.open()
    try:
        yield TestClient(create_app(cfg, state=state))
    finally:
        state.close()


def finished(client: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    return wait_for_job(client, job_id, timeout)


def ingest(client: TestClient, *paths: Path | str, **extra: Any) -> dict[str, Any]:
    r = client.post("/ingest", json={"paths": [str(p) for p in paths], **extra})
    assert r.status_code == 202, r.text
    return finished(client, r.json()["id"])


class TestIngestRoots:
    @pytest.mark.parametrize("client", [{"ingest_roots": []}], indirect=True)
    def test_without_roots_ingest_is_refused_naming_the_setting(self, client: TestClient, layout: Path) -> None:
        r = client.post("/ingest", json={"paths": [str(layout)]})
        assert r.status_code == 403 and r.json()["error"] == "Forbidden"
        assert "service.ingest_roots" in r.json()["detail"] and "PIPELINE_SERVICE__INGEST_ROOTS" in r.json()["detail"]

    def test_symlinked_file_inside_a_root_is_not_followed_out(self, client: TestClient, layout: Path) -> None:
        (layout / "passwd.txt").symlink_to(layout.parent / "secret.txt")
        job = ingest(client, layout)
        assert job["state"] == "succeeded"
        by_name = {Path(f["path"]).name: f for f in job["report"]["files"]}
        assert by_name["violin.txt"]["status"] == "added"
        assert by_name["passwd.txt"]["status"] == "failed"
        assert by_name["passwd.txt"]["reason"] == "skipped: it is a symlink that resolves outside the ingest roots"
        hits = client.post("/retrieve", json={"query": "walrus-bone secret of osric root", "top_k": 5}).json()
        assert hits["sources"] and not any("secret-of-osric" in s["text"] for s in hits["sources"])

    def test_paths_outside_or_through_symlinks_out_are_422_without_naming_the_roots(self, client: TestClient, layout: Path) -> None:
        (layout / "up").symlink_to(layout.parent)
        for path in (layout.parent / "secret.txt", layout / "up" / "secret.txt", layout / "up"):
            r = client.post("/ingest", json={"paths": [str(path)]})
            assert r.status_code == 422, r.text
            shown = str(path).replace(str(layout), "<ingest root>")  # responses never spell out a root
            assert r.json()["detail"] == f"{shown}: outside service.ingest_roots"
        r = client.post("/ingest", json={"paths": [str(layout / "missing.pdf")]})
        assert r.status_code == 422 and "no such file or folder" in r.json()["detail"]

    def test_fifo_is_skipped_and_the_queue_is_not_wedged(self, client: TestClient, layout: Path) -> None:
        os.mkfifo(layout / "pipe.txt")
        started = time.monotonic()
        alone = ingest(client, layout / "pipe.txt")
        in_folder = ingest(client, layout)
        assert time.monotonic() - started < 60
        assert alone["state"] == "succeeded" and alone["report"]["files"][0]["reason"].startswith("skipped: not a regular file (FIFO)")
        reasons = {Path(f["path"]).name: f["reason"] for f in in_folder["report"]["files"]}
        assert reasons["pipe.txt"].startswith("skipped: not a regular file (FIFO)") and reasons["violin.txt"] == ""

    def test_ten_thousand_files_fail_the_job_with_the_limit(self, client: TestClient, layout: Path) -> None:
        """The folder is walked in the job, not in the request (issue 21): the job fails, nothing is ingested."""
        many = layout / "many"
        many.mkdir()
        for i in range(10_000):
            (many / f"{i:05d}.txt").write_text(f"file {i}")
        r = client.post("/ingest", json={"paths": [str(many)]})
        assert r.status_code == 202, r.text
        job = finished(client, r.json()["id"])
        assert job["state"] == "failed" and job["report"] is None
        assert "over limit: more than 1000 files in one ingest (service.ingest_max_files)" in job["error"]
        assert str(layout) not in job["error"] and len(json.dumps(job)) < 2000

    def test_file_swapped_for_a_symlink_after_the_scan_is_not_served(
        self, client: TestClient, layout: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Issue 21 point 2: the swap happens in a hook between the job's scan and its read."""
        import importlib

        run = importlib.import_module("pipeline.ingest.run")  # the attribute pipeline.ingest is the ingest() function
        (layout / "note.txt").write_text("A harmless note about copper kettles and brass lamps. " * 10)
        os.link(layout.parent / "secret.txt", layout / "linked.txt")  # a hard link out of the root
        real_scan = run.scan

        def scan_then_swap(*args: Any, **kwargs: Any) -> Any:
            found = real_scan(*args, **kwargs)
            (layout / "swap").symlink_to(layout.parent / "secret.txt")
            os.replace(layout / "swap", layout / "note.txt")
            return found

        monkeypatch.setattr(run, "scan", scan_then_swap)
        job = ingest(client, layout)
        assert job["state"] == "succeeded"
        by_name = {Path(f["path"]).name: f for f in job["report"]["files"]}
        assert by_name["violin.txt"]["status"] == "added"
        assert by_name["note.txt"]["status"] == "failed"
        assert by_name["note.txt"]["reason"].startswith("skipped: it is a symlink now (replaced after the scan?)")
        assert by_name["linked.txt"]["reason"].startswith("skipped: hard link (2 names for one file")
        hits = client.post("/retrieve", json={"query": "walrus-bone secret of osric root bash", "top_k": 10}).json()
        assert hits["sources"] and not any("secret-of-osric" in s["text"] for s in hits["sources"])

    def test_fifo_pipelineignore_holds_neither_the_request_nor_the_job(self, client: TestClient, layout: Path) -> None:
        """Issue 21 point 3: the request only checks the paths; the job refuses the folder with the reason."""
        import threading

        sub = layout / "sub"
        sub.mkdir()
        (sub / "kettle.txt").write_text("Brass kettles whistle in Quillmoor. " * 10)
        fifo = sub / ".pipelineignore"
        os.mkfifo(fifo)

        def unblock() -> None:  # today's code waits on the FIFO: let it go after 10 s, so the test fails, not hangs
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

        timer = threading.Timer(10, unblock)
        timer.start()
        try:
            started = time.monotonic()
            r = client.post("/ingest", json={"paths": [str(sub)]})
            took = time.monotonic() - started
            assert r.status_code == 202 and took < 5, (r.status_code, took)
            job = finished(client, r.json()["id"], timeout=60)
        finally:
            timer.cancel()
            unblock()
        assert job["state"] == "succeeded" and time.monotonic() - started < 10
        [only] = job["report"]["files"]
        assert only["status"] == "failed"
        assert only["reason"].startswith("skipped: its .pipelineignore is unusable: not a regular file (FIFO); the folder was not scanned")

    def test_path_checks_that_hang_are_a_503_not_a_held_request(self, client: TestClient, layout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A file system that does not answer (a hung NFS mount) costs the request a bounded wait."""
        import threading

        from pipeline.service import routes

        release = threading.Event()
        monkeypatch.setattr(routes, "check_ingest_paths", lambda paths, limits: release.wait(30) and [])
        monkeypatch.setattr(routes, "PATH_CHECK_SECONDS", 0.5)
        try:
            started = time.monotonic()
            r = client.post("/ingest", json={"paths": [str(layout)]})
            assert r.status_code == 503 and time.monotonic() - started < 5
            assert "did not answer the path checks within 0.5 s" in r.json()["detail"] and r.headers["retry-after"] == "30"
        finally:
            release.set()
        assert client.get("/healthz").status_code == 200

    def test_file_name_that_is_not_utf8_is_one_skip(self, client: TestClient, layout: Path) -> None:
        """Issue 21 point 6: the job goes on after the bad name, and GET/DELETE /jobs/{id} answer 200."""
        fd = os.open(os.fsencode(layout) + b"/\xff.txt", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"Latin-1 named file. " * 10)
        os.close(fd)
        (layout / "zebra.txt").write_text("Zebras of Lake Vantor graze by the ferry pier. " * 10)
        job = ingest(client, layout)
        assert job["state"] == "succeeded", job
        by_name = {Path(f["path"]).name: f for f in job["report"]["files"]}
        assert by_name["\\xff.txt"]["reason"] == "skipped: file name is not valid UTF-8; rename it (e.g. convmv -f latin1 -t utf8)"
        assert by_name["violin.txt"]["status"] == "added" and by_name["zebra.txt"]["status"] == "added"
        assert client.get(f"/jobs/{job['id']}").status_code == 200
        assert client.delete(f"/jobs/{job['id']}").status_code == 200

    @pytest.mark.parametrize("client", [{"ingest_max_file_bytes": 1024}], indirect=True)
    def test_file_over_the_byte_cap_is_skipped_over_limit(self, client: TestClient, layout: Path) -> None:
        (layout / "big.txt").write_text("x " * 4096)
        job = ingest(client, layout)
        reasons = {Path(f["path"]).name: f["reason"] for f in job["report"]["files"]}
        assert reasons["big.txt"] == "skipped: over limit (8192 bytes, the limit is 1024 bytes per file)"


class TestBadInputIsA4xx:
    @pytest.mark.parametrize(
        ("paths", "needle"),
        [
            (["/data/a\u0000.pdf"], "NUL or control character"),
            (["/data/\ud800.pdf"], "lone surrogate"),
            (["/" + "a" * 5000], "the limit is 4095"),
            (["/" + "/".join(["c" * 40] * 100)], "the limit is 4095"),
            (["/data/" + "n" * 300], "a path component is over 255 bytes"),
            (["relative/a.pdf"], "must be absolute"),
        ],
    )
    def test_odd_path_text_is_422_never_500(self, client: TestClient, paths: list[str], needle: str) -> None:
        body = json.dumps({"paths": paths})  # ASCII with \u escapes: a lone surrogate travels as JSON allows
        r = client.post("/ingest", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert needle in detail or (needle == "lone surrogate" and "unable to parse raw data as a unicode string" in detail)

    @pytest.mark.parametrize(
        ("route", "body", "field"),
        [
            ("/retrieve", {"query": "q", "top_k": "3"}, "top_k"),
            ("/retrieve", {"query": "q", "top_k": True}, "top_k"),
            ("/retrieve", {"query": 7}, "query"),
            ("/query", {"query": "q", "stream": "yes"}, "stream"),
            ("/ingest", {"paths": ["/data"], "prune": "yes"}, "prune"),
            ("/ingest", {"paths": ["/data"], "prune": 1}, "prune"),
        ],
    )
    def test_loose_json_types_are_refused(self, client: TestClient, route: str, body: dict[str, Any], field: str) -> None:
        r = client.post(route, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"][-1] == field

    @pytest.mark.parametrize("top_k", [0, 51])
    def test_top_k_out_of_range_has_the_cli_message(self, client: TestClient, top_k: int) -> None:
        r = client.post("/retrieve", json={"query": "q", "top_k": top_k})
        assert r.status_code == 422 and f"top_k must be between 1 and 50, got {top_k}" in r.json()["detail"]

    def test_lone_surrogate_query_and_job_ids(self, client: TestClient) -> None:
        r = client.post("/retrieve", content=b'{"query": "\\ud800 ferry"}', headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "unicode" in r.json()["detail"]
        assert client.get("/jobs/not-a-job").status_code == 404
        assert client.get("/jobs/" + "f" * 65).status_code == 422  # ids are short: a long one is not looked up
        assert client.delete("/jobs/" + "0" * 32).status_code == 404


class TestResponses:
    def test_no_server_paths_and_per_request_query_counts(self, client: TestClient, tmp_path: Path) -> None:
        status = client.get("/status").json()
        assert status["store"] == "store" and status["qdrant"] == "embedded"
        assert str(tmp_path) not in client.get("/status").text
        assert str(tmp_path) not in client.get("/readyz").text
        for _ in range(3):
            answer = client.post("/retrieve", json={"query": "How many bicycles does the ferry carry?"}).json()
            assert answer["stats"]["embedded_queries"] == 1 and answer["stats"]["embedded_texts"] == 0

    def test_delete_cancels_a_queued_job_and_leaves_the_store_whole(self, client: TestClient, layout: Path) -> None:
        first = client.post("/ingest", json={"paths": [str(layout)]}).json()
        second = client.post("/ingest", json={"paths": [str(layout)]}).json()
        cancelled = client.delete(f"/jobs/{second['id']}")
        assert cancelled.status_code in (200, 202)
        assert finished(client, second["id"])["state"] == "cancelled"
        assert finished(client, first["id"])["state"] in ("succeeded", "cancelled")
        hits = client.post("/retrieve", json={"query": "copper violins walrus-bone pegs", "top_k": 1}).json()["sources"]
        assert hits  # whatever happened to the jobs, the store answers
