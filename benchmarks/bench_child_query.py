"""Child of bench_papers.py: a new process that rehydrates a store and answers one retrieval (ours).

Prints one JSON object with the time spent in imports, opening the engine and the first retrieval.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from pipeline.config import Settings  # noqa: E402
from pipeline.retrieve.engine import Engine  # noqa: E402

T_IMPORT = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--mode", default="chunk")
    ap.add_argument("--top-k", type=int, default=3)
    args = ap.parse_args()
    engine = Engine(Settings(store=args.store), load_llm=False)
    t_open = time.perf_counter()
    answer = engine.retrieve(args.query, args.mode, args.top_k)
    t_first = time.perf_counter()
    engine.close()
    print(
        json.dumps(
            {
                "import_s": round(T_IMPORT - T0, 3),
                "open_s": round(t_open - T_IMPORT, 3),
                "first_retrieve_s": round(t_first - t_open, 3),
                "in_process_s": round(t_first - T0, 3),
                "embedded_texts": answer.stats.embedded_texts,
                "top": [s.readable_id for s in answer.sources],
            }
        )
    )


if __name__ == "__main__":
    main()
