"""Benchmark 3 on every core (issue 26): first ingest and the raw embedding model, at 1 and at N threads.

For each thread count, one after the other on the same papers (no LLM): a first ingest into a new store
(``embed.threads`` = that count), then the seed notebook's child embedding exactly the references our
ingest writes with the same threads (its ``embed_s`` is the raw model alone). So each ingest is compared
with raw embedding at its own thread count (target: within +5 %) and the thread counts with each other
(target: ≥ 1.7× references per second at 2 threads on 2 cores). Writes
benchmarks/results/bench/threads.json (or ``--out``); ``--keep`` leaves the first store in place (the
41-paper store other benchmarks read).

    nice -n 10 .venv/bin/python benchmarks/bench_threads.py --threads 2,1 --keep storage/bench/papers41
    nice -n 10 .venv/bin/python benchmarks/bench_threads.py --threads 2,1 --limit 8 --out threads_8
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import corpus_of, NO_LLM, PAPERS, PY, QUERY, STORES, ChildRun, run_child, write_result  # noqa: E402


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _child(args: list[str], env: dict[str, str]) -> ChildRun:
    run = run_child(args, env)
    if run.code not in (0, 1):
        raise SystemExit(f"child failed ({run.code}): {' '.join(args)}\n{run.stderr[-2000:]}")
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="2,1", help="thread counts, in the order run (default 2,1)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N papers by name (0: all 41)")
    ap.add_argument("--keep", type=Path, help="keep the first configuration's store here (moved after its run)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw-embedding children")
    ap.add_argument("--out", default="threads", help="result name under benchmarks/results/bench/")
    args = ap.parse_args()
    papers = sorted(PAPERS.glob("*.pdf"))[: args.limit or None]
    corpus = corpus_of(papers, "threads_corpus")
    runs = []
    for i, n in enumerate(int(t) for t in args.threads.split(",")):
        env = {**NO_LLM, "PIPELINE_EMBED__THREADS": str(n)}
        store = STORES / f"threads_store_{n}"
        shutil.rmtree(store, ignore_errors=True)
        load_before = _load()
        ingest = _child([PY, "-m", "pipeline", "ingest", str(corpus), "--store", str(store), "--json"], env)
        report = ingest.json()
        refs = sum(report["stats"]["references"].values())
        row = {
            "threads": n,
            "load_before": load_before,
            "ingest": {"wall_s": round(ingest.seconds, 1), "references": refs, "parents": report["stats"]["parents"],
                       "refs_per_s": round(refs / ingest.seconds, 2), "peak_rss_mb": round(ingest.peak_rss_mb, 1),
                       "embedded_texts": report["stats"]["embedded_texts"]},
            "load_after_ingest": _load(),
        }
        if not args.no_raw:
            raw = _child([PY, "benchmarks/bench_child_notebook.py", str(corpus), "--query", QUERY], env).json()
            row["raw_embedding"] = {"embed_s": raw["embed_s"], "texts": raw["texts"], "texts_per_s": round(raw["texts"] / raw["embed_s"], 2)}
            row["overhead_pct"] = round(100 * (ingest.seconds / raw["embed_s"] - 1), 1)
            row["load_after_raw"] = _load()
        runs.append(row)
        print(row, flush=True)
        if i == 0 and args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            args.keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(store), str(args.keep))
        else:
            shutil.rmtree(store, ignore_errors=True)
    out = {
        "command": "benchmarks/bench_threads.py " + " ".join(sys.argv[1:]),
        "papers": len(papers),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True).stdout.strip(),
        "runs": runs,
    }
    by = {r["threads"]: r for r in runs}
    if 1 in by and len(by) > 1:
        best = max(by)
        out["speedup_refs_per_s"] = round(by[best]["ingest"]["refs_per_s"] / by[1]["ingest"]["refs_per_s"], 2)
    write_result(args.out, out)
    shutil.rmtree(corpus, ignore_errors=True)


if __name__ == "__main__":
    main()
