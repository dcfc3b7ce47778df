"""End-to-end fixtures: stores built by real `python -m pipeline` processes on the bundled sample PDF."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, SAMPLE_PDF


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 1500) -> Run:
    """Run `python -m pipeline ...` in a new process, as a user or a cron job would."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=_cli_env(env), capture_output=True, text=True, timeout=timeout
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


NO_LLM = {"PIPELINE_LLM__PROVIDER": "none", "PIPELINE_INGEST__ENRICH": "false"}


# Embedded backends the core suites run on (`qdrant.backend`): edge is the default, local mode is how a
# store written before edge opens. The rest of the e2e suite runs on the default only (suite time).
BACKENDS = ("edge", "local")


def backend_env(backend: str) -> dict[str, str]:
    return {"PIPELINE_QDRANT__BACKEND": backend}


def copy_store(src: Path, dst: Path) -> Path:
    """Copy a store folder keeping its files sparse.

    qdrant-edge pre-sizes its WAL and storage files (64 MB of WAL, 32 MB pages) and leaves them as holes;
    ``shutil.copytree`` writes the holes out, turning a 0.6 MB sample store into 680 MB. One suite
    run copies stores ~45 times: 30 GB, which once filled the disk of a CI run (ENOSPC).
    """
    subprocess.run(["cp", "-R", "--sparse=always", "--preserve=mode,timestamps", str(src), str(dst)], check=True)
    return dst


def store_client(store: Path) -> Any:
    """The store's Qdrant client as the pipeline opens it (edge, or local mode for a store written by it)."""
    from pipeline.config import Settings
    from pipeline.store.qdrant import open_client

    return open_client(Settings(store=store))


def _cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `python -m pipeline` child: none of the user's PIPELINE_/QDRANT_/OPENAI_
    variables, the tests' empty config file, the run's model cache (tests/conftest.py), then ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    full_env["PIPELINE_CONFIG"] = str(ROOT / "tests" / "no-config.toml")
    if "PIPELINE_MODEL_CACHE" in os.environ:
        full_env["PIPELINE_MODEL_CACHE"] = os.environ["PIPELINE_MODEL_CACHE"]
    full_env.update(env or {})
    return full_env


def killed_at(step: str, args: list[str], env: dict[str, str], tmp_path: Path) -> None:
    """Run `python -m pipeline ARGS` until it reaches the ledger protocol's ``step``, then SIGKILL it.

    The pause is the protocol's own hook (``PIPELINE_FAULT_PAUSE``, pipeline/store/ledger.py): the
    process touches a marker and waits there."""
    marker = tmp_path / f"paused-{step}"
    full = _cli_env({**env, "PIPELINE_FAULT_PAUSE": f"{step}:{marker}"})
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not marker.exists():
            assert proc.poll() is None, f"ended before {step}: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, f"never reached {step}"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)


def store_snapshot(store: Path) -> dict[str, Any]:
    """Everything a reader can see, to compare two stores: (point id, parent id) per collection, the
    parent ids, and per document its ledger entry's content hash, parents, references and whether an
    intent is pending."""
    from pipeline.store.docstore import ParentStore

    client = store_client(store)
    parents = ParentStore(store / "docstore.sqlite")
    try:
        points = {}
        for c in client.get_collections().collections:
            found, _ = client.scroll(c.name, limit=100_000, with_payload=["parent_id"])
            points[c.name] = {(str(p.id), (p.payload or {}).get("parent_id")) for p in found}
        ledger = {
            d: {"content_hash": e.content_hash, "parents": sorted(e.parents), "refs": {k: sorted(v) for k, v in e.refs.items()}, "pending": e.pending is not None}
            for d, e in parents.ledger().items()
        }
        return {"points": points, "parents": set(parents.ids()), "ledger": ledger}
    finally:
        client.close()
        parents.close()


def referenced_parents(snap: dict[str, Any]) -> set[str]:
    """The parents the points of a ``store_snapshot`` point at."""
    return {parent for pts in snap["points"].values() for _, parent in pts}


def _ingest_plain(tmp_path_factory: pytest.TempPathFactory, backend: str) -> tuple[Path, Run]:
    store = tmp_path_factory.mktemp(f"plain-{backend}") / "store"
    run = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env={**NO_LLM, **backend_env(backend)})
    assert run.code == 0, run.stderr
    assert (store / ("edge" if backend == "edge" else "qdrant")).is_dir()
    return store, run


@pytest.fixture(scope="session")
def plain_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """The sample ingested with chunk and parent references only (no LLM), default backend (edge): fast."""
    return _ingest_plain(tmp_path_factory, "edge")


@pytest.fixture(scope="session")
def local_plain_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """The same, written by qdrant-client local mode (``qdrant.backend=local``): a store from before edge."""
    return _ingest_plain(tmp_path_factory, "local")


@pytest.fixture(scope="session", params=BACKENDS)
def any_store(request: pytest.FixtureRequest) -> tuple[Path, Run]:
    """``plain_store`` on each embedded backend: for the core suites (test_core, test_migrate, test_hybrid)."""
    return request.getfixturevalue("plain_store" if request.param == "edge" else "local_plain_store")


# Short generations keep the LLM tests in seconds; what they check does not depend on length.
SMALL_LLM = {"PIPELINE_LLM__PROVIDER": "llamacpp", "PIPELINE_LLM__MAX_TOKENS": "128"}
EXCERPT_PAGES = range(4, 7)  # pages 5-7 of the sample: corpus statistics and the SciBERT comparison


@pytest.fixture(scope="session")
def excerpt_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real pages of the sample (pypdf copies them): 4 parents instead of 20 for the LLM tests."""
    from pypdf import PdfReader, PdfWriter

    reader, writer = PdfReader(str(SAMPLE_PDF)), PdfWriter()
    for i in EXCERPT_PAGES:
        writer.add_page(reader.pages[i])
    path = tmp_path_factory.mktemp("excerpt") / "acl2020-excerpt.pdf"
    with path.open("wb") as f:
        writer.write(f)
    return path


@pytest.fixture(scope="session")
def llm_store(tmp_path_factory: pytest.TempPathFactory, excerpt_pdf: Path) -> tuple[Path, Run]:
    """The excerpt ingested with both phases: chunk refs, then summaries and questions by SmolLM2.

    ``--enrich now`` because the default (auto) skips SmolLM2's summaries: they do not help retrieval.
    """
    pytest.importorskip("xllamacpp")
    store = tmp_path_factory.mktemp("llm") / "store"
    run = run_cli("ingest", str(excerpt_pdf), "--store", str(store), "--enrich", "now", "--json", env=SMALL_LLM)
    assert run.code == 0, run.stderr
    return store, run


QDRANT_IMAGE = "qdrant/qdrant:v1.18.0"  # same pin as docker-compose.yml


def docker_engine_answers() -> str | None:
    """None if a Docker engine answers, else the reason it does not."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return None
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:120]})"


@pytest.fixture(scope="module")
def qdrant_url() -> Iterator[str]:
    reason = docker_engine_answers()
    if reason:
        pytest.skip(f"containerized Qdrant needs Docker: {reason}")
    try:
        from testcontainers.community.qdrant import QdrantContainer
    except ImportError:  # testcontainers < 4.10
        from testcontainers.qdrant import QdrantContainer

    container = QdrantContainer(QDRANT_IMAGE)
    container.start()
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6333)
        yield f"http://{host}:{port}"
    finally:
        container.stop()


def wait_for_job(client: Any, job_id: str, timeout: float = 300) -> dict[str, Any]:
    """Poll ``GET /jobs/{id}`` (httpx or TestClient) until the job ends; fail if the queue looks wedged."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still running after {timeout} s: the queue is wedged")
