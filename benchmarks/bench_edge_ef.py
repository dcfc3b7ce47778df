"""Benchmark 7e: HNSW search breadth (``qdrant.hnsw_ef``) against recall and latency on one large edge store.

Why apart from bench_latency.py: ef is a per-search setting, so one derived store answers every value;
re-deriving 300k references (upsert + HNSW build) takes minutes. Recall is as in bench_child_latency.py:
the share of the exact top-30 of the children collection whose score the HNSW search also reaches;
latency is one ``query_points`` (payload parent_id/kind, as retrieval asks), query embedding excluded.

    nice -n 5 .venv/bin/python benchmarks/bench_edge_ef.py --store storage/bench/edge300k --derive 300000 --efs 512,768,1024,1536
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import STORES, write_result  # noqa: E402
from bench_latency import DATASETS, derive_edge, read_edge_points  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="an edge store (derived with --derive if missing)")
    ap.add_argument("--derive", type=int, default=0, help="derive the store from --source at this many points when it is missing")
    ap.add_argument("--source", type=Path, default=STORES / "papers41")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--efs", default="512,768,1024,1536")
    args = ap.parse_args()
    import numpy as np
    from qdrant_client import models

    from pipeline.config import Settings
    from pipeline.providers.embeddings import build_embedder
    from pipeline.store.edge import EdgeClient

    if not (args.store / "edge").exists():
        if not args.derive:
            raise SystemExit(f"{args.store} has no edge folder: pass --derive N")
        points, infos = read_edge_points(args.source)
        derive_edge(args.source, args.store, args.derive, points, infos)
    texts: list[str] = []
    for name in ("paul_graham_essay", "blockchain_solana", "history_of_alexnet"):
        texts += [e["query"] for e in json.loads((DATASETS / name / "rag_dataset.json").read_text())["examples"]]
    embedder = build_embedder(Settings())
    vectors = [embedder.get_query_embedding(t) for t in texts[: args.queries]]
    client = EdgeClient(args.store / "edge")
    try:
        name = "docs_children"
        points = client.count(name).count
        floors = [client.query_points(name, query=v, limit=30, search_params=models.SearchParams(exact=True), with_payload=False).points[-1].score
                  for v in vectors]
        rows = []
        for ef in (int(x) for x in args.efs.split(",")):
            lat, rec = [], []
            for v, floor in zip(vectors, floors):
                t0 = time.perf_counter()
                hits = client.query_points(name, query=v, limit=30, search_params=models.SearchParams(hnsw_ef=ef), with_payload=["parent_id", "kind"]).points
                lat.append((time.perf_counter() - t0) * 1000)
                rec.append(sum(1 for h in hits if h.score >= floor - 1e-6) / 30)
            rows.append({"hnsw_ef": ef, "p50_ms": round(float(np.percentile(lat, 50)), 2), "p95_ms": round(float(np.percentile(lat, 95)), 2),
                         "recall": round(float(np.mean(rec)), 4)})
            print(rows[-1], flush=True)
    finally:
        client.close()
    write_result("edge_ef", {"command": f"benchmarks/bench_edge_ef.py --store {args.store} --derive {args.derive} --efs {args.efs}",
                             "children_points": points, "queries": len(vectors), "efs": rows})


if __name__ == "__main__":
    main()
