"""PostgreSQL restarted under a running `pipeline ingest` (issue 25, piece 6): the run carries on or
stops with "database unreachable" and nothing half-written, a re-run completes, and `check` is clean.

A real restart of the machine's server (``pg_ctlcluster 15 main restart``, as root): every session
ends, including the worker's pooled connections and its writer-lock session. Skipped, with the
reason, where that command cannot restart the server the tests use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import NO_LLM
from tests.e2e.pdfs import page_text, write_pdf
from tests.fleet.test_workers import ledger, worker
from tests.pgdb import ADMIN_URL, pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
CLUSTER = ("15", "main")
DOCS = 5


def restartable() -> str | None:
    """Why ``pg_ctlcluster`` cannot restart the server at ADMIN_URL here, or None if it can."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        return "pg_ctlcluster not installed (Debian's postgresql-common)"
    if os.geteuid() != 0:
        return "pg_ctlcluster needs root to restart the cluster"
    port = urlsplit(ADMIN_URL).port or 5432
    host = urlsplit(ADMIN_URL).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        return f"the test server {host} is not this machine's"
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout.split("\n")
    if not any(line.split()[:4] == [*CLUSTER, str(port), "online"] for line in out if line.strip()):
        return f"no online cluster {' '.join(CLUSTER)} on port {port} (pg_lsclusters: {out[:3]})"
    return None


def committed(url: str, ns: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        return conn.execute("SELECT count(*) FROM kv WHERE namespace = %s AND collection = 'ledger' AND NOT value::jsonb ? 'pending'",
                            (f"{ns}/docstore",)).fetchone()[0]


def test_ingest_survives_a_postgres_restart(tmp_path: Path, pg_url: str) -> None:
    if (why := restartable()) is not None:
        pytest.skip(why)
    folder = tmp_path / "docs"
    for i in range(DOCS):
        write_pdf(folder / f"r{i}.pdf", [page_text(f"r{i}p{j}") for j in range(6)])
    store = tmp_path / "store"
    proc = worker(store, folder, pg_url, "fleet", PIPELINE_DATABASE__LEASE_SECONDS="3")
    deadline = time.monotonic() + 600
    while True:  # restart once the first document is committed and the others are still to come
        assert proc.poll() is None, f"the ingest ended before the restart: {proc.stderr.read()[-2000:]}"
        try:
            if committed(pg_url, "fleet") >= 1:
                break
        except psycopg.Error:
            pass  # the schema is not created yet
        assert time.monotonic() < deadline, "no document committed"
        time.sleep(0.2)
    restart = subprocess.run(["pg_ctlcluster", *CLUSTER, "restart"], capture_output=True, text=True, timeout=120)
    assert restart.returncode == 0, restart.stderr
    out, err = proc.communicate(timeout=900)
    print("the run during the restart:", "carried on" if proc.returncode == 0 else f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
    if proc.returncode != 0:  # stopped cleanly on the lost database: exit 2 naming it, no traceback
        assert proc.returncode == 2 and "unreachable" in err and "Traceback" not in err, err[-3000:]
        proc = worker(store, folder, pg_url, "fleet", PIPELINE_DATABASE__LEASE_SECONDS="3")  # the re-run (after the leases expire)
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    entries = ledger(pg_url, "fleet", tmp_path)
    assert len(entries) == DOCS and not any(pending for _, _, pending in entries.values())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    env.update(NO_LLM, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"), PIPELINE_DATABASE__URL=pg_url, PIPELINE_DATABASE__NAMESPACE="fleet")
    check = subprocess.run([sys.executable, "-m", "pipeline", "check", "--store", str(store), "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
