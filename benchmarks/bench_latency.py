"""Benchmark 4: retrieve latency (p50/p95) against store size, embedded Qdrant (local mode).

Stores of ~2k, 20k and 100k reference points are derived from the 41-paper store built by
bench_papers.py, every collection scaled by the same factor: its first points (whole documents, in
ingest order) below the source size, and above it replicas of its points under new ids with the
same payloads (so every replica points at a real parent). They are written straight into local mode's SQLite file in one transaction,
because the client's upsert commits once per point (~64 points/s here: 100k would take ~26 min).
Parents are the same docstore. Each size is measured in a new process: open time, peak RSS, and
p50/p95 over the queries of the three llama-datasets (chunk and all modes, top_k 3).

    nice -n 10 .venv/bin/python benchmarks/bench_latency.py --sizes 2000,20000,100000
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sqlite3
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import PY, ROOT, STORES, run_child, write_result  # noqa: E402

from qdrant_client.local.persistence import CollectionPersistence  # noqa: E402

DATASETS = ROOT.parent / "shared" / "corpus" / "llama_datasets"


def read_points(store: Path, collection: str) -> list:
    db = store / "qdrant" / "collection" / collection / "storage.sqlite"
    con = sqlite3.connect(db)
    try:
        return [pickle.loads(row[0]) for row in con.execute("SELECT point FROM points ORDER BY rowid")]
    finally:
        con.close()


def derive(source: Path, target: Path, size: int, points: dict[str, list]) -> int:
    """Copy ``source`` to ``target`` with ``size`` points in all, each collection scaled alike."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("storage.sqlite", "*.lock", "cache.sqlite*"))
    total = sum(len(p) for p in points.values())
    written = 0
    for name, coll_points in points.items():
        if coll_points:
            written += write_points(target, name, round(size * len(coll_points) / total), coll_points)
    return written


def write_points(target: Path, collection: str, size: int, points: list) -> int:
    db = target / "qdrant" / "collection" / collection / "storage.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE IF NOT EXISTS points (id TEXT PRIMARY KEY, point BLOB)")
    rows = []
    for i in range(size):
        p = points[i % len(points)]
        replica = i // len(points)
        pid = str(p.id) if replica == 0 else str(uuid.uuid5(uuid.UUID(str(p.id)), f"replica-{replica}"))
        q = p.model_copy(update={"id": pid})
        rows.append((CollectionPersistence.encode_key(pid), sqlite3.Binary(pickle.dumps(q))))
    with con:
        con.executemany("INSERT OR REPLACE INTO points VALUES (?, ?)", rows)
    con.close()
    return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=STORES / "papers41")
    ap.add_argument("--sizes", default="2000,20000,100000")
    ap.add_argument("--queries", type=int, default=100, help="queries per mode and size")
    ap.add_argument("--modes", default="base,chunk,all", help="metadata is empty in the no-LLM 41-paper store")
    ap.add_argument("--variants", default="default", help="retrieval stages per mode, as in eval: default, dense, hybrid, hybrid+rerank")
    ap.add_argument("--out", default="latency", help="result name under benchmarks/results/bench/")
    args = ap.parse_args()
    queries: list[str] = []
    for name in ("paul_graham_essay", "blockchain_solana", "history_of_alexnet"):
        queries += [e["query"] for e in json.loads((DATASETS / name / "rag_dataset.json").read_text())["examples"]]
    qfile = STORES / "latency_queries.json"
    qfile.parent.mkdir(parents=True, exist_ok=True)
    qfile.write_text(json.dumps(queries[: args.queries]))
    points = {d.name: read_points(args.source, d.name) for d in sorted((args.source / "qdrant" / "collection").iterdir())}
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        target = STORES / f"latency{size}"
        written = derive(args.source, target, size, points)
        run = run_child([PY, "benchmarks/bench_child_latency.py", "--store", str(target), "--queries", str(qfile), "--modes", args.modes, "--variants", args.variants])
        if run.code != 0:
            raise SystemExit(f"latency child failed at {size}: {run.stderr[-2000:]}")
        results.append({"points": written, "wall_s": round(run.seconds, 2), "peak_rss_mb": round(run.peak_rss_mb, 1), **run.json()})
        print(json.dumps(results[-1]), flush=True)
        shutil.rmtree(target, ignore_errors=True)
    write_result(args.out, {
        "command": f"benchmarks/bench_latency.py --source {args.source} --sizes {args.sizes} --queries {args.queries} --modes {args.modes} --variants {args.variants}",
        "how": f"every collection of {args.source.name} scaled alike: its first points, or replicas with new ids above its size; local-mode Qdrant",
        "source_points": sum(len(p) for p in points.values()),
        "source_collections": {name: len(p) for name, p in points.items()},
        "sizes": results,
    })


if __name__ == "__main__":
    main()
