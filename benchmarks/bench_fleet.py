"""Retrieve latency with parents read from PostgreSQL (fleet mode) against SQLite, same store, same queries.

The store's SQLite state is copied into a fresh database with `pipeline migrate --to postgres`, so both
runs read identical parents; only where they are read from differs. Vectors stay in the embedded engine.

    nice -n 10 .venv/bin/python benchmarks/bench_fleet.py --store /tmp/bench-store --pdf samples/acl2020.acl-main.447.pdf
    # the issue's target store (ingesting 41 papers costs ~20+ CPU-minutes on 2 cores):
    nice -n 10 .venv/bin/python benchmarks/bench_fleet.py --store /tmp/papers-store --pdf /work/shared/corpus/papers/
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

QUERIES = ["What is S2ORC?", "How many papers are in the corpus?", "Which fields of study are covered?", "How are citations linked?",
           "What metadata does each paper have?", "How was the PDF parsed?", "What is the license?", "How large is the full text?"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure(store: Path, env: dict[str, str], rounds: int) -> dict[str, float]:
    code = f"""
import json, sys, time, os
from pathlib import Path
from pipeline.config import Settings
from pipeline.retrieve.engine import Engine
qs = {QUERIES!r}
engine = Engine(Settings(store=Path({str(store)!r})), load_llm=False)
for q in qs: engine.retrieve(q, "chunk", 3)
ms = []
for _ in range({rounds}):
    for q in qs:
        t = time.perf_counter(); engine.retrieve(q, "chunk", 3); ms.append((time.perf_counter() - t) * 1000)
print(json.dumps(ms))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    ms = json.loads(out.stdout.strip().splitlines()[-1])
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(pct(ms, 0.95), 2), "n": len(ms)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--pdf", type=Path, default=Path("samples/acl2020.acl-main.447.pdf"))
    ap.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rounds", type=int, default=25)
    args = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")} | {"PIPELINE_LLM__PROVIDER": "none", "PIPELINE_INGEST__ENRICH": "false"}
    if not (args.store / "docstore.sqlite").exists():
        subprocess.run([sys.executable, "-m", "pipeline", "ingest", str(args.pdf), "--store", str(args.store)], env=base, check=True)
    import psycopg

    name = f"bench_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db = base | {"PIPELINE_DATABASE__URL": args.admin_url.rpartition("/")[0] + "/" + name}
        subprocess.run([sys.executable, "-m", "pipeline", "migrate", "--to", "postgres", "--store", str(args.store)], env=db, check=True)
        results = {}
        for label, env in (("sqlite", base), ("postgres", db), ("sqlite again", base), ("postgres again", db)):
            results[label] = measure(args.store, env, args.rounds)
            print(label, results[label], flush=True)
        load = os.getloadavg()[0]
        print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load1": round(load, 2), "store": str(args.store), "results": results}, indent=2))
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
