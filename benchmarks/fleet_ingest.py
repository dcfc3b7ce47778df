"""Ingest with the state in PostgreSQL against SQLite, and two ingest workers against one (issue 25).

Four cold runs over the same corpus, each into a new store and (for PostgreSQL) a new database, so
nothing comes from an ingest cache; the PDFs are read once first so the page cache is warm for all:

1. ``sqlite``: `pipeline ingest CORPUS` (default settings, state in the store's SQLite files);
2. ``postgres``: the same with ``PIPELINE_DATABASE__URL`` (target: wall time within +5 % of 1);
3. ``one worker``: PostgreSQL, ``embed.threads=1``;
4. ``two workers``: two `pipeline ingest CORPUS` processes started together on one new database, each
   ``embed.threads=1`` (target: ≥ 1.8× the documents per second of 3 on 2 cores). Without a Qdrant
   server each worker writes its own embedded store (as tests/fleet/test_workers.py); with
   ``QDRANT_URL`` set both write the server's collections (a fresh prefix per run).

Every run must ingest every document (no failure) or the script stops. Run it on a quiet machine:

    nice -n 10 .venv/bin/python benchmarks/fleet_ingest.py                       # the 41 papers (~1.5-2 h on 2 cores)
    nice -n 10 .venv/bin/python benchmarks/fleet_ingest.py --limit 3 --smallest --label papers3   # a 3-paper try

Writes benchmarks/results/fleet_ingest_<label>.json (benchmarks/render_fleet.py renders it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A new database for one run, dropped after."""
    import psycopg

    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rpartition("/")[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(corpus: Path, store: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "ingest", str(corpus), "--store", str(store), "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(label: str, corpus: Path, stores: list[Path], env: dict[str, str], expected: int) -> dict[str, Any]:
    """Start one ingest per store at once; wall time until the last ends; each must succeed."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    procs = [start(corpus, s, env) for s in stores]
    reports = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{label}: ingest exited {p.returncode}: {err[-3000:]}")
        reports.append(json.loads(out))
    wall = time.perf_counter() - t0
    written = [f for r in reports for f in r["files"] if f["status"] in ("added", "updated")]
    failed = [f for r in reports for f in r["files"] if f["status"] == "failed"]
    if failed or len({f["doc_id"] for f in written}) != expected or len(written) != expected:
        raise SystemExit(f"{label}: expected {expected} documents written once each, got {len(written)} ({len(failed)} failed)")
    out = {
        "wall_s": round(wall, 1), "cpu_s": round(children_cpu() - cpu0, 1), "documents": expected,
        "docs_per_s": round(expected / wall, 4), "parents": sum(r["stats"]["parents"] for r in reports),
        "workers": len(stores), "per_worker_documents": [sum(1 for f in r["files"] if f["status"] in ("added", "updated")) for r in reports],
        "load1_after": round(os.getloadavg()[0], 2),
    }
    print(label, out, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=Path("/work/shared/corpus/papers"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N PDFs (by name, or by size with --smallest); 0 = all")
    ap.add_argument("--smallest", action="store_true", help="with --limit: the N smallest PDFs (a quick try)")
    ap.add_argument("--label", default="papers41")
    ap.add_argument("--admin-url", default=os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--work", type=Path, default=None, help="folder for the stores (default: a temp folder, removed after)")
    args = ap.parse_args()

    pdfs = sorted(args.corpus.glob("*.pdf"), key=(lambda p: p.stat().st_size) if args.smallest else None)[: args.limit or None]
    if not pdfs:
        raise SystemExit(f"no PDF under {args.corpus}")
    work = Path(tempfile.mkdtemp(prefix="fleet-ingest-", dir=args.work))
    corpus = work / "corpus"
    corpus.mkdir()
    for pdf in pdfs:  # copies, not links (ingest does not follow links under its roots); read once: warm page cache
        shutil.copyfile(pdf, corpus / pdf.name)
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    base |= {"PIPELINE_LLM__PROVIDER": "none", "PIPELINE_INGEST__ENRICH": "false"}
    qdrant = os.environ.get("QDRANT_URL")
    n = len(pdfs)
    runs: dict[str, Any] = {}
    load0 = os.getloadavg()[0]
    try:
        runs["sqlite"] = run("sqlite", corpus, [work / "sqlite"], base | prefix(qdrant), n)
        with database(args.admin_url) as url:
            runs["postgres"] = run("postgres", corpus, [work / "postgres"], base | {"PIPELINE_DATABASE__URL": url} | prefix(qdrant), n)
        one = {"PIPELINE_EMBED__THREADS": "1"}
        with database(args.admin_url) as url:
            runs["one worker"] = run("one worker", corpus, [work / "one"], base | one | {"PIPELINE_DATABASE__URL": url} | prefix(qdrant), n)
        with database(args.admin_url) as url:
            runs["two workers"] = run("two workers", corpus, [work / "two-a", work / "two-b"], base | one | {"PIPELINE_DATABASE__URL": url} | prefix(qdrant), n)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit, "cpus": os.cpu_count(),
        "load1_before": round(load0, 2), "label": args.label, "documents": n, "corpus": str(args.corpus),
        "vectors": "Qdrant server (QDRANT_URL)" if qdrant else "embedded engine (one store per worker)",
        "command": (f"nice -n {os.nice(0)} " if os.nice(0) else "") + ".venv/bin/python benchmarks/fleet_ingest.py " + " ".join(sys.argv[1:]),
        "runs": runs,
        "postgres_over_sqlite": round(runs["postgres"]["wall_s"] / runs["sqlite"]["wall_s"], 3),  # target <= 1.05
        "two_over_one": round(runs["two workers"]["docs_per_s"] / runs["one worker"]["docs_per_s"], 3),  # target >= 1.8
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"fleet_ingest_{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"postgres/sqlite wall {result['postgres_over_sqlite']}, two/one docs per s {result['two_over_one']}; wrote {out}")


def prefix(qdrant: str | None) -> dict[str, str]:
    """With a Qdrant server, a fresh collection prefix per run (cold, and nothing shared between runs)."""
    return {"PIPELINE_QDRANT__PREFIX": f"bench{uuid.uuid4().hex[:8]}"} if qdrant else {}


if __name__ == "__main__":
    main()
