"""Retrieve latency and the parent lookup with parents read from PostgreSQL (fleet mode) against SQLite.

The store's SQLite state is copied into a fresh database with `pipeline migrate --to postgres`, so both
read identical parents; only where they are read from differs. Vectors stay in the embedded engine.
Each measurement runs in a new process; the backends alternate (SQLite, PostgreSQL, SQLite, PostgreSQL)
so a change in machine load shows as a difference between the two runs of one backend.

Two measurements (issue 25, target: PostgreSQL within +2 ms of SQLite at p95):
- ``retrieve``: ``Engine.retrieve`` end to end (query embedding, search, parents, confidence);
- ``lookup``: what fleet mode changes alone, the docstore reads of one retrieve (the parents of 5
  self-reference hits, then 3 parents' JSON: ``parents_of_self_refs`` + ``get_many``), on ids drawn
  from the store. ``--pool-check`` also measures the pool as it was before (a connection check on
  every checkout), for the before/after comparison.

    nice -n 10 .venv/bin/python benchmarks/fleet_retrieve.py --store /tmp/store3 --label papers3
    # the issue's store (the lead builds it; see /work/bench/README):
    nice -n 10 .venv/bin/python benchmarks/fleet_retrieve.py --store /work/bench/papers41 --label papers41 --pool-check

Writes benchmarks/results/fleet_retrieve_<label>.json (benchmarks/render_fleet.py renders it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["What is S2ORC?", "How many papers are in the corpus?", "Which fields of study are covered?", "How are citations linked?",
           "What metadata does each paper have?", "How was the PDF parsed?", "What is the license?", "How large is the full text?"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(pct(ms, 0.95), 3), "n": len(ms)}


RETRIEVE = """
import json, time
from pathlib import Path
from pipeline.config import Settings
from pipeline.retrieve.engine import Engine
qs = {queries!r}
engine = Engine(Settings(store=Path({store!r})), load_llm=False)
for q in qs: engine.retrieve(q, "chunk", 3)
ms = []
for _ in range({rounds}):
    for q in qs:
        t = time.perf_counter(); engine.retrieve(q, "chunk", 3); ms.append((time.perf_counter() - t) * 1000)
print(json.dumps(ms))
"""

LOOKUP = """
import json, random, time
from pathlib import Path
from pipeline.config import Settings
from pipeline.store import state
from pipeline.store.docstore import SELF_REFS
settings = Settings(store=Path({store!r}))
if {pool_check!r} and settings.database.url is not None:  # the pool as it was before: a check on every checkout
    from psycopg_pool import ConnectionPool
    from pipeline.store import postgres
    url = settings.database.url.get_secret_value()
    p = ConnectionPool(url, min_size=1, max_size=4, open=True, check=ConnectionPool.check_connection, kwargs={{"autocommit": True}}, timeout=5)
    postgres._ensure_schema(p, url)
    postgres._pools[url] = p
parents = state.open_parents(settings)
self_refs = sorted(parents.kv.keys(SELF_REFS))
ids = sorted(parents.ids())
rng = random.Random(7)
ms = []
for i in range({lookups} + 50):
    hits = rng.sample(self_refs, min(5, len(self_refs)))
    t = time.perf_counter()
    found = parents.parents_of_self_refs(hits)
    rows = parents.kv.get_many((list(dict.fromkeys(found.values())) + rng.sample(ids, 3))[:3], "parents/data")
    took = (time.perf_counter() - t) * 1000
    assert rows
    if i >= 50:  # the first 50 warm the connections and caches
        ms.append(took)
print(json.dumps(ms))
"""


def measure(code: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return summary(json.loads(out.stdout.strip().splitlines()[-1]))


def store_size(store: Path, env: dict[str, str]) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-m", "pipeline", "status", "--json", "--store", str(store)], env=env, capture_output=True, text=True, cwd=ROOT)
    status = json.loads(out.stdout)
    return {"documents": status.get("documents", 0), "parents": status.get("parents", 0),
            "references": sum(status.get("collections", {}).values())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--pdf", type=Path, default=ROOT / "samples" / "acl2020.acl-main.447.pdf", help="ingested first when the store has no docstore")
    ap.add_argument("--label", default="sample")
    ap.add_argument("--admin-url", default=os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--rounds", type=int, default=25, help="retrieve: rounds of the 8 queries")
    ap.add_argument("--lookups", type=int, default=2000, help="lookup: measured lookups per run")
    ap.add_argument("--pool-check", action="store_true", help="also measure the pool with a check on every checkout (before)")
    ap.add_argument("--skip-retrieve", action="store_true")
    args = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")} | {"PIPELINE_LLM__PROVIDER": "none", "PIPELINE_INGEST__ENRICH": "false"}
    if not (args.store / "docstore.sqlite").exists():
        subprocess.run([sys.executable, "-m", "pipeline", "ingest", str(args.pdf), "--store", str(args.store)], env=base, check=True, cwd=ROOT)
    import psycopg

    name = f"bench_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    load_before = os.getloadavg()[0]
    try:
        db = base | {"PIPELINE_DATABASE__URL": args.admin_url.rpartition("/")[0] + "/" + name}
        subprocess.run([sys.executable, "-m", "pipeline", "migrate", "--to", "postgres", "--store", str(args.store)], env=db, check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        # Settle the bulk copy before measuring: statistics for the planner, and the checkpoint and vacuum
        # it would otherwise trigger during the first PostgreSQL run (a 41-paper cache is ~280 MB of rows).
        with psycopg.connect(db["PIPELINE_DATABASE__URL"], autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE kv")
            try:
                conn.execute("CHECKPOINT")
            except psycopg.Error:  # not a superuser: the vacuum is what matters most
                pass
        runs: dict[str, dict[str, dict[str, float]]] = {"lookup": {}, "retrieve": {}}
        plan = [("sqlite", base, False), ("postgres", db, False)]
        if args.pool_check:
            plan.append(("postgres, pool check per checkout", db, True))
        for round_ in (1, 2):
            for label, env, check in plan:
                key = label if round_ == 1 else f"{label} (again)"
                runs["lookup"][key] = measure(LOOKUP.format(store=str(args.store), lookups=args.lookups, pool_check=check), env)
                print("lookup", key, runs["lookup"][key], flush=True)
                if not args.skip_retrieve and not check:
                    runs["retrieve"][key] = measure(RETRIEVE.format(store=str(args.store), rounds=args.rounds, queries=QUERIES), env)
                    print("retrieve", key, runs["retrieve"][key], flush=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "load1": [round(load_before, 2), round(os.getloadavg()[0], 2)], "cpus": os.cpu_count(),
            "store": str(args.store), "label": args.label, "size": store_size(args.store, base),
            "command": (f"nice -n {os.nice(0)} " if os.nice(0) else "") + ".venv/bin/python benchmarks/fleet_retrieve.py " + " ".join(sys.argv[1:]),
            "runs": runs,
        }
        out = ROOT / "benchmarks" / "results" / f"fleet_retrieve_{args.label}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
