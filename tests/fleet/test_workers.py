"""Several `pipeline ingest` processes on one database share the work (issue 25, piece 2) — real processes, real server.

There is no Qdrant server here, so each worker writes its own embedded store; the docstore, cache,
ledger and leases are shared in PostgreSQL. What a single worker would have written must equal the
union of what the workers wrote, with no reference written twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import NO_LLM
from tests.e2e.pdfs import page_text, write_pdf
from tests.pgdb import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

DOCS = 6


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    for i in range(DOCS):
        write_pdf(folder / f"d{i}.pdf", [page_text(f"d{i}p{j}") for j in range(3)])
    return folder


def worker(store: Path, folder: Path, url: str, ns: str, **env: str) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    full.update(NO_LLM, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"), PIPELINE_DATABASE__URL=url, PIPELINE_DATABASE__NAMESPACE=ns, **env)
    if "PIPELINE_MODEL_CACHE" in os.environ:
        full["PIPELINE_MODEL_CACHE"] = os.environ["PIPELINE_MODEL_CACHE"]
    return subprocess.Popen([sys.executable, "-m", "pipeline", "ingest", str(folder), "--store", str(store), "--json"],
                            cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def points(store: Path) -> dict[str, set[str]]:
    from pipeline.config import Settings
    from pipeline.store.qdrant import open_client

    client = open_client(Settings(store=store))
    try:
        out = {}
        for c in client.get_collections().collections:
            found, _ = client.scroll(c.name, limit=100_000)
            out[c.name] = {str(p.id) for p in found}
        return out
    finally:
        client.close()


def ledger(url: str, ns: str, tmp_path: Path) -> dict[str, tuple]:
    from pipeline.config import Settings
    from pipeline.store.state import open_ledger_reader

    reader = open_ledger_reader(Settings(store=tmp_path / "x", database={"url": url, "namespace": ns}))
    return {d: (e.content_hash, sorted(e.parents), e.pending is not None) for d, e in reader.ledger().items()}


def written(report: dict[str, Any]) -> set[str]:
    return {f["doc_id"] for f in report["files"] if f["status"] in ("added", "updated")}


def test_two_workers_claim_every_document_once(corpus: Path, tmp_path: Path, pg_url: str) -> None:
    single = finish(worker(tmp_path / "single", corpus, pg_url, "single"))
    a, b = worker(tmp_path / "a", corpus, pg_url, "fleet"), worker(tmp_path / "b", corpus, pg_url, "fleet")
    ra, rb = finish(a), finish(b)
    assert len(written(single)) == DOCS
    assert written(ra) | written(rb) == written(single)  # every document by someone...
    assert not written(ra) & written(rb)  # ...and by one worker only
    pa, pb, ps = points(tmp_path / "a"), points(tmp_path / "b"), points(tmp_path / "single")
    for coll, ids in ps.items():
        assert pa.get(coll, set()) | pb.get(coll, set()) == ids, coll
        assert not pa.get(coll, set()) & pb.get(coll, set()), coll
    assert ledger(pg_url, "fleet", tmp_path) == ledger(pg_url, "single", tmp_path)


def test_a_killed_workers_claim_is_taken_over_after_its_lease(corpus: Path, tmp_path: Path, pg_url: str) -> None:
    marker = tmp_path / "paused"
    lease = "4"
    a = worker(tmp_path / "a", corpus, pg_url, "fleet", PIPELINE_FAULT_PAUSE=f"after-parents:{marker}", PIPELINE_DATABASE__LEASE_SECONDS=lease)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert a.poll() is None and time.monotonic() < deadline, a.stderr.read() if a.poll() is not None else "never paused"
        time.sleep(0.2)
    held = {d for d, e in ledger(pg_url, "fleet", tmp_path).items() if e[2]}  # its intent, mid-write
    assert len(held) == 1
    a.send_signal(signal.SIGKILL)
    a.wait()
    killed_at = time.monotonic()
    rb = finish(worker(tmp_path / "b", corpus, pg_url, "fleet", PIPELINE_DATABASE__LEASE_SECONDS=lease))
    assert written(rb) == {f"{doc}" for doc in ledger(pg_url, "fleet", tmp_path)} and held <= written(rb)  # took it over
    assert time.monotonic() - killed_at >= float(lease) - 1  # not before the lease expired
    assert not any(e[2] for e in ledger(pg_url, "fleet", tmp_path).values())  # no intent left pending
    assert len(ledger(pg_url, "fleet", tmp_path)) == DOCS
