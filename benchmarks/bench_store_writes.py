"""Benchmark 3c: what the Qdrant writes cost an ingest, per embedded backend (edge, local mode).

Why cached: the writes are the same whatever the embedding costs, so each backend re-ingests the 41
papers into a new store that starts with a copy of the first run's ingest cache (``cache.sqlite``):
no text is embedded again, every reference is written again, and ``store_seconds`` (ingest's own
count of time in Qdrant: upserts with their BM25 vectors, deletes, flushes, optimize) is what the
backend costs. Its share is taken against the first ingest's wall time (``--first-wall``, the
uncached run of the same papers, e.g. `/usr/bin/time` around it).

    nice -n 10 .venv/bin/python benchmarks/bench_store_writes.py --source storage/bench/papers41 --first-wall 2100
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import NO_LLM, PAPERS, PY, STORES, run_child, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=STORES / "papers41", help="a store whose cache holds every reference of the papers")
    ap.add_argument("--first-wall", type=float, required=True, help="wall seconds of the first (uncached) ingest of the same papers")
    ap.add_argument("--backends", default="edge,local")
    args = ap.parse_args()
    rows = {}
    for backend in args.backends.split(","):
        store = STORES / f"writes_{backend}"
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir(parents=True)
        shutil.copy2(args.source / "cache.sqlite", store / "cache.sqlite")
        run = run_child([PY, "-m", "pipeline", "ingest", str(PAPERS), "--store", str(store), "--json"],
                        {**NO_LLM, "PIPELINE_QDRANT__BACKEND": backend})
        if run.code != 0:
            raise SystemExit(f"{backend} ingest failed: {run.stderr[-2000:]}")
        s = run.json()["stats"]
        refs = sum(s["references"].values())
        rows[backend] = {"wall_s": round(run.seconds, 2), "ingest_s": s["seconds"], "store_s": s["store_seconds"], "references": refs,
                         "embedded_texts": s["embedded_texts"], "points_per_store_s": round(refs / s["store_seconds"]) if s["store_seconds"] else None,
                         "share_of_first_ingest_pct": round(100 * s["store_seconds"] / args.first_wall, 2), "peak_rss_mb": round(run.peak_rss_mb)}
        print(backend, rows[backend], flush=True)
        shutil.rmtree(store, ignore_errors=True)
    write_result("store_writes", {
        "command": f"benchmarks/bench_store_writes.py --source {args.source} --first-wall {args.first_wall} --backends {args.backends}",
        "how": "each backend re-ingests the 41 papers into a new store seeded with the first run's ingest cache (nothing embedded); "
               "store_s = ingest's time in Qdrant; share against the first, uncached ingest's wall time",
        "first_ingest_wall_s": args.first_wall,
        "backends": rows,
    })


if __name__ == "__main__":
    main()
