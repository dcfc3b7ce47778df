"""Benchmark 3, side by side: first ingest (no LLM) and the raw embedding model on the same papers, at once.

Both children are single-threaded (1 ONNX thread each) and start together on the 2-core machine, so each
gets one core and both see the same load: a fairer overhead figure than two runs at different times.
The raw side is the notebook child, which embeds exactly the references our ingest writes and times
that embedding alone (``embed_s``). Writes benchmarks/results/bench/throughput.json; the earlier sequential
figure is kept in benchmarks/results/bench/throughput_sequential.json by hand.

    .venv/bin/python benchmarks/bench_throughput.py            # all 41 papers
    .venv/bin/python benchmarks/bench_throughput.py --limit 10 # the first 10, sorted by name
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import corpus_of, NO_LLM, PAPERS, PY, QUERY, STORES, ChildRun, run_child, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="only the first N papers (0: all)")
    ap.add_argument("--embed", default="", help="offline embedder for both sides: minilm | bge-small (default: the package default)")
    ap.add_argument("--out", default="throughput", help="result name under benchmarks/results/bench/")
    args = ap.parse_args()
    papers = sorted(PAPERS.glob("*.pdf"))[: args.limit or None]
    corpus = corpus_of(papers, "throughput_corpus")
    store = STORES / "throughput_store"
    shutil.rmtree(store, ignore_errors=True)
    runs: dict[str, ChildRun] = {}
    jobs = {
        "ingest": [PY, "-m", "pipeline", "ingest", str(corpus), "--store", str(store), "--json"],
        "raw": [PY, "benchmarks/bench_child_notebook.py", str(corpus), "--query", QUERY],
    }
    env = {**NO_LLM, **({"PIPELINE_EMBED__MODEL": args.embed} if args.embed else {})}
    threads = [threading.Thread(target=lambda n=n, a=a: runs.__setitem__(n, run_child(a, env))) for n, a in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, run in runs.items():
        if run.code not in (0, 1):
            raise SystemExit(f"{name} child failed ({run.code}): {run.stderr[-2000:]}")
    ingest, raw = runs["ingest"].json(), runs["raw"].json()
    refs = sum(ingest["stats"]["references"].values())
    write_result(args.out, {
        "command": f"benchmarks/bench_throughput.py{' --limit ' + str(args.limit) if args.limit else ''}"
        + (f" --embed {args.embed}" if args.embed else "") + f" --out {args.out}",
        "embed": args.embed or "default",
        "how": "ingest and raw embedding started together, one core each, same papers",
        "papers": len(papers),
        "pipeline": {"wall_s": round(runs["ingest"].seconds, 1), "references": refs, "parents": ingest["stats"]["parents"],
                     "refs_per_s": round(refs / runs["ingest"].seconds, 2), "peak_rss_mb": round(runs["ingest"].peak_rss_mb, 1)},
        "raw_embedding": {"embed_s": raw["embed_s"], "texts": raw["texts"], "texts_per_s": round(raw["texts"] / raw["embed_s"], 2)},
        "overhead_pct": round(100 * (runs["ingest"].seconds / raw["embed_s"] - 1), 1),
    })
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
