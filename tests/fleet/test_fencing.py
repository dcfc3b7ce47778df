"""Lease fencing with real processes (issue 25, piece 2): a worker that stalls past its lease while
another takes its document over must not commit it, even though it wakes up in the middle of its write.

The stall is the one fault here that cannot be caused otherwise: ``PIPELINE_FAULT_PAUSE=stall-…`` makes the
worker stop itself (SIGSTOP, heartbeat included) just before its ledger commit, as a long GC or VM
pause would; the test lets it run on (SIGCONT) after the other worker committed a newer version.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import NO_LLM
from tests.e2e.pdfs import page_text, write_pdf
from tests.fleet.test_workers import finish, ledger, worker, written
from tests.pgdb import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
LEASE = "3"


def parent_texts(url: str, ns: str, tmp_path: Path, doc_id: str) -> list[str]:
    from pipeline.config import Settings
    from pipeline.store.state import open_parents

    parents = open_parents(Settings(store=tmp_path / "x", database={"url": url, "namespace": ns}))
    entry = parents.ledger_entry(doc_id)
    assert entry is not None and entry.pending is None, entry
    return [parents.get(pid).get_content() for pid in entry.parents]


def test_a_worker_stalled_past_its_lease_does_not_commit(tmp_path: Path, pg_url: str) -> None:
    folder = tmp_path / "docs"
    write_pdf(folder / "x.pdf", [page_text(f"old{j}") for j in range(3)])
    marker = tmp_path / "stalled"
    a = worker(tmp_path / "a", folder, pg_url, "fleet", PIPELINE_FAULT_PAUSE=f"stall-before-commit:{marker}", PIPELINE_DATABASE__LEASE_SECONDS=LEASE)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert a.poll() is None and time.monotonic() < deadline, a.stderr.read() if a.poll() is not None else "never stalled"
            time.sleep(0.2)
        ((doc_id, state),) = ledger(pg_url, "fleet", tmp_path).items()
        assert state[2]  # a's intent is in the ledger, its commit not yet
        # The file changes while a is stalled; b takes the document over once a's lease has expired.
        write_pdf(folder / "x.pdf", [page_text(f"new{j}") for j in range(3)])
        rb = finish(worker(tmp_path / "b", folder, pg_url, "fleet", PIPELINE_DATABASE__LEASE_SECONDS=LEASE))
        assert written(rb) == {doc_id}
        new = parent_texts(pg_url, "fleet", tmp_path, doc_id)
        assert page_text("new0")[:60] in new[0]
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)  # a wakes up just before its ledger commit
    out, err = a.communicate(timeout=300)
    assert a.returncode == 2, (out, err[-2000:])
    assert "lease expired" in err and "nothing of it was committed" in err
    # a wrote its stale version's parents before it stalled; b's change deleted them (they were in a's intent),
    # and a's commit was refused: the ledger and the docstore hold b's version only.
    assert parent_texts(pg_url, "fleet", tmp_path, doc_id) == new
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    env.update(NO_LLM, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"), PIPELINE_DATABASE__URL=pg_url, PIPELINE_DATABASE__NAMESPACE="fleet")
    check = subprocess.run([os.sys.executable, "-m", "pipeline", "check", "--store", str(tmp_path / "b"), "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
