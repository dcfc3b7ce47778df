"""Query-embedding throughput with micro-batching on and off: T threads × N queries each, closed loop.

Measures the embedder alone (no Qdrant, no HTTP), so the numbers show what batching does to the
model's share of a request: each thread embeds its next query as soon as the last one returned,
through ``BatchedQueryEmbedding`` (window > 0) or the plain embedder (window 0, as the CLI does).

    .venv/bin/python benchmarks/bench_query_batching.py --threads 16 --queries 40 --windows 0 1 2 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import QUESTIONS  # noqa: E402  (the same questions the service load test sends)

from pipeline.providers.batching import BatchedQueryEmbedding  # noqa: E402
from pipeline.providers.embeddings import OnnxMiniLMEmbedding  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run(window_ms: float, threads: int, per_thread: int, max_batch: int, onnx_threads: int) -> dict[str, Any]:
    model = OnnxMiniLMEmbedding(threads=onnx_threads)
    model.load()
    model.get_query_embedding("warm up")
    embedder: Any = BatchedQueryEmbedding(model, window_ms, max_batch) if window_ms > 0 else model
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def client(k: int) -> None:
        mine = []
        barrier.wait()
        for i in range(per_thread):
            query = f"{QUESTIONS[(k * per_thread + i) % len(QUESTIONS)]} ({k}.{i})"  # distinct: no dedup win
            started = time.perf_counter()
            embedder.get_query_embedding(query)
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - started
    batches = embedder.batcher.batches if window_ms > 0 else len(latencies)
    if window_ms > 0:
        embedder.close()
    return {
        "window_ms": window_ms,
        "queries": len(latencies),
        "seconds": round(seconds, 3),
        "queries_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "onnx_calls": batches,
        "mean_batch": round(len(latencies) / batches, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--queries", type=int, default=40, help="queries per thread")
    parser.add_argument("--windows", type=float, nargs="+", default=[0, 1, 2, 5], help="ms; 0 = no batching")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--onnx-threads", type=int, default=1, help="ONNX intra-op threads (embed.threads)")
    parser.add_argument("--out", type=Path, help="results file (JSON); printed only when omitted")
    args = parser.parse_args()
    rows = []
    for window in args.windows:
        row = run(window, args.threads, args.queries, args.max_batch, args.onnx_threads)
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    result = {
        "threads": args.threads,
        "queries_per_thread": args.queries,
        "max_batch": args.max_batch,
        "onnx_threads": args.onnx_threads,
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
