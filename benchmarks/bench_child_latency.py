"""Child of bench_latency.py: open one store in a new process, then time many retrievals per mode."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline.config import Settings
from pipeline.eval.metrics import percentile
from pipeline.eval.run import VARIANTS
from pipeline.retrieve.engine import Engine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--queries", type=Path, required=True, help="JSON list of query strings")
    ap.add_argument("--modes", default="chunk,all")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--variants", default="default", help="comma-separated: default, dense, hybrid, hybrid+rerank (stages as in eval)")
    args = ap.parse_args()
    queries = json.loads(args.queries.read_text())
    t0 = time.perf_counter()
    engine = Engine(Settings(store=args.store), load_llm=False)
    open_s = time.perf_counter() - t0
    engine.retrieve(queries[0], "chunk", args.top_k)  # warm-up
    out = {"open_s": round(open_s, 3), "modes": {}}
    for mode in args.modes.split(","):
        for variant in args.variants.split(","):
            hybrid, rerank = VARIANTS[variant]
            stats = [engine.retrieve(q, mode, args.top_k, rerank=rerank, hybrid=hybrid).stats for q in queries]
            ms = [s.retrieve_ms for s in stats]
            embed = [s.embed_ms for s in stats]
            key = mode if variant == "default" else f"{mode}/{variant}"
            out["modes"][key] = {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
                                 "max_ms": round(max(ms), 2), "embed_p50_ms": round(percentile(embed, 50), 2)}
    engine.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
