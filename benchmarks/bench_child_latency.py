"""Child of bench_latency.py: open one store in a new process, then time many retrievals per mode.

Reports the open (``Engine``: docstore, Qdrant client, embedder) and the first retrieve apart, because
a new process pays both before its first answer; latencies with and without the query embedding
(``embed_ms`` is the ONNX call alone); and, with ``--recall N``, the recall of the engine's default
search on the children collection against exact search for N queries: the share of the exact top-30
whose score the default search also reaches (score-based, so equal-score ties do not count as misses).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline.config import Settings
from pipeline.eval.metrics import percentile
from pipeline.eval.run import VARIANTS
from pipeline.retrieve.engine import Engine

RECALL_LIMIT = 30  # the children search of top_k 3 × overfetch 10


def recall(engine: Engine, queries: list[str]) -> dict[str, float]:
    from qdrant_client import models

    from pipeline.store.layout import Collection

    client = engine.store.client
    name = engine.store.names[Collection.CHILDREN]
    found, total, exact_ms, default_ms = 0, 0, [], []
    for q in queries:
        vec = engine.embedder.get_query_embedding(q)
        t0 = time.perf_counter()
        exact = client.query_points(name, query=vec, limit=RECALL_LIMIT, search_params=models.SearchParams(exact=True)).points
        t1 = time.perf_counter()
        approx = client.query_points(name, query=vec, limit=RECALL_LIMIT).points
        t2 = time.perf_counter()
        exact_ms.append((t1 - t0) * 1000)
        default_ms.append((t2 - t1) * 1000)
        if not exact:
            continue
        floor = exact[-1].score - 1e-6
        got = sorted((p.score for p in approx), reverse=True)
        total += len(exact)
        found += min(len(exact), sum(1 for s in got if s >= floor))
    return {"queries": len(queries), "limit": RECALL_LIMIT, "recall": round(found / total, 4) if total else None,
            "exact_p50_ms": round(percentile(exact_ms, 50), 2), "default_p50_ms": round(percentile(default_ms, 50), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--queries", type=Path, required=True, help="JSON list of query strings")
    ap.add_argument("--modes", default="chunk,all")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--variants", default="default", help="comma-separated: default, dense, hybrid, hybrid+rerank (stages as in eval)")
    ap.add_argument("--recall", type=int, default=0, help="queries for HNSW recall against exact search (0: skip)")
    ap.add_argument("--open-only", action="store_true", help="stop after the first retrieve (bench_latency's repeated opens)")
    args = ap.parse_args()
    queries = json.loads(args.queries.read_text())
    t0 = time.perf_counter()
    engine = Engine(Settings(store=args.store), load_llm=False)
    open_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    engine.retrieve(queries[0], "chunk", args.top_k)  # the first answer of a new process
    first_s = time.perf_counter() - t1
    out = {"open_s": round(open_s, 3), "first_retrieve_s": round(first_s, 3), "open_first_s": round(open_s + first_s, 3), "modes": {}}
    if args.open_only:
        engine.close()
        print(json.dumps(out))
        return
    # A new process reads the memory-mapped vectors from the page cache (or disk) as searches touch
    # them: the first pass over the queries is reported apart ("cold"), the modes are measured after it.
    cold = [engine.retrieve(q, "chunk", args.top_k).stats for q in queries]
    cold_search = [s.retrieve_ms - s.embed_ms for s in cold]
    out["cold_chunk_no_embed_p50_ms"] = round(percentile(cold_search, 50), 2)
    out["cold_chunk_no_embed_p95_ms"] = round(percentile(cold_search, 95), 2)
    for mode in args.modes.split(","):
        for variant in args.variants.split(","):
            hybrid, rerank = VARIANTS[variant]
            stats = [engine.retrieve(q, mode, args.top_k, rerank=rerank, hybrid=hybrid).stats for q in queries]
            ms = [s.retrieve_ms for s in stats]
            embed = [s.embed_ms for s in stats]
            search = [s.retrieve_ms - s.embed_ms for s in stats]
            key = mode if variant == "default" else f"{mode}/{variant}"
            out["modes"][key] = {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
                                 "max_ms": round(max(ms), 2), "embed_p50_ms": round(percentile(embed, 50), 2),
                                 "no_embed_p50_ms": round(percentile(search, 50), 2), "no_embed_p95_ms": round(percentile(search, 95), 2)}
    # Peak RSS of the query process before the recall check (whose exact searches read every vector).
    status = Path("/proc/self/status").read_text()
    out["query_peak_rss_mb"] = round(int(status.split("VmHWM:")[1].split()[0]) / 1024)
    # Of the resident memory now: anonymous (heap: Python, ONNX) and file-backed (the engine's
    # memory-mapped shards: page cache the kernel can drop under pressure and read again).
    out["rss_anon_mb"] = round(int(status.split("RssAnon:")[1].split()[0]) / 1024)
    out["rss_file_mb"] = round(int(status.split("RssFile:")[1].split()[0]) / 1024)
    if args.recall:
        pool = (queries * (args.recall // max(1, len(queries)) + 1))[: args.recall]
        out["recall"] = recall(engine, pool)
    engine.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
