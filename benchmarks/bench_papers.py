"""Benchmarks 1, 2, 3 and 5 of docs/benchmarks.md, side by side in one run on ../shared/corpus/papers.

1. cold start: new process → first retrieval answered; ours (rehydrate a store) against the seed
   notebook's approach (embed every reference at start, in-memory VectorStoreIndex), on one paper
   and on all 41 papers → benchmarks/results/bench/cold_start.json
2. re-ingest of the unchanged corpus: second run time / first run time and call counts
   → benchmarks/results/bench/reingest.json
3. ingest throughput without LLM against the raw throughput of the embedding model on the same
   texts (the notebook child times its embedding alone) → benchmarks/results/bench/throughput.json
5. peak RSS of the ingest process and of a query process → benchmarks/results/bench/memory.json

    nice -n 10 .venv/bin/python benchmarks/bench_papers.py            # ~1 h on 2 busy cores
    nice -n 10 .venv/bin/python benchmarks/bench_papers.py --reuse    # keep existing stores (skips 2, 3)

The notebook run on 41 papers embeds ~20k texts (as long as our first ingest). To save time it can run
beside the first ingest (same load for both, a fairer overhead figure) and be read back here:
``--notebook41-from benchmarks/results/bench/notebook41.json``; with ``--reuse`` the first-ingest figures are read
back from benchmarks/results/bench/reingest.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import NO_LLM, ONE_PAPER, PAPERS, PY, QUERY, RESULTS, STORES, ChildRun, run_child, write_result  # noqa: E402


def ingest(paths: list[Path], store: Path) -> ChildRun:
    run = run_child([PY, "-m", "pipeline", "ingest", *map(str, paths), "--store", str(store), "--json"], NO_LLM)
    if run.code not in (0, 1):
        raise SystemExit(f"ingest failed ({run.code}): {run.stderr[-2000:]}")
    return run


def ours(store: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        r = run_child([PY, "benchmarks/bench_child_query.py", "--store", str(store), "--query", QUERY])
        if r.code != 0:
            raise SystemExit(f"query child failed: {r.stderr[-2000:]}")
        runs.append({"wall_s": round(r.seconds, 3), "peak_rss_mb": round(r.peak_rss_mb, 1), **r.json()})
    return {"runs": runs, "wall_s_median": round(statistics.median(x["wall_s"] for x in runs), 3),
            "peak_rss_mb_max": max(x["peak_rss_mb"] for x in runs)}


def notebook(paths: list[Path], repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        r = run_child([PY, "benchmarks/bench_child_notebook.py", *map(str, paths), "--query", QUERY])
        if r.code != 0:
            raise SystemExit(f"notebook child failed: {r.stderr[-2000:]}")
        runs.append({"wall_s": round(r.seconds, 3), "peak_rss_mb": round(r.peak_rss_mb, 1), **r.json()})
    return {"runs": runs, "wall_s_median": round(statistics.median(x["wall_s"] for x in runs), 3),
            "peak_rss_mb_max": max(x["peak_rss_mb"] for x in runs)}


def stats_of(run: ChildRun) -> dict:
    s = run.json()["stats"]
    keep = ("documents", "parents", "references", "llm_calls", "embedded_texts", "cache_hits", "cache_misses",
            "parents_reused", "parents_rebuilt", "files_added", "files_unchanged", "files_failed", "seconds")
    return {k: s[k] for k in keep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reuse", action="store_true", help="keep existing stores: skip the cold ingest (benchmarks 2, 3)")
    ap.add_argument("--repeats", type=int, default=5, help="cold starts per configuration (ours)")
    ap.add_argument("--first-from-watch", type=Path, help="first ingest stopped early: JSON {wall_s, peak_rss_mb} of that part, measured from /proc; finish it here")
    ap.add_argument("--note", default="", help="recorded in reingest.json")
    ap.add_argument("--notebook41-from", type=Path, help="read the 41-paper notebook run from this JSON (see above)")
    ap.add_argument("--notebook-repeats", type=int, default=3, help="notebook cold starts on one paper (41 papers: once)")
    args = ap.parse_args()
    papers = sorted(PAPERS.glob("*.pdf"))
    one_store, all_store = STORES / "paper1", STORES / "papers41"

    # Ingest: one paper, then all 41 cold (first run) and again unchanged (second run).
    if not args.reuse and not args.first_from_watch:
        for s in (one_store, all_store):
            shutil.rmtree(s, ignore_errors=True)
    if not (one_store / "docstore.sqlite").exists():
        ingest([ONE_PAPER], one_store)
    if args.first_from_watch:
        # The first run stopped early (see --first-from-watch); a second invocation finishes the cold
        # ingest of the remaining files, and the two parts together are the first run.
        import json

        part1 = json.loads(args.first_from_watch.read_text())
        rest = None if part1.get("complete") else ingest([PAPERS], all_store)
        second = ingest([PAPERS], all_store)
        s_rest, s2 = (stats_of(rest) if rest else None), stats_of(second)
        refs = sum(s2["references"].values())
        first_wall = part1["wall_s"] + (rest.seconds if rest else 0.0)
        first_rss = max(part1["peak_rss_mb"], rest.peak_rss_mb if rest else 0.0)
        s1 = {**s2, "embedded_texts": refs, "llm_calls": 0, "cache_hits": None, "cache_misses": None,
              "files_added": s2["files_unchanged"], "files_unchanged": 0, "seconds": None}
        write_result("reingest", {
            "command": f"python -m pipeline ingest {PAPERS} --store STORE --json (no LLM), twice",
            "corpus": {"files": len(papers), "bytes": sum(p.stat().st_size for p in papers)},
            "first": {"wall_s": round(first_wall, 2), "peak_rss_mb": round(first_rss, 1), **s1,
                      "parts": {"until_stop_s": part1["wall_s"], "rest_s": round(rest.seconds, 2) if rest else 0.0, "rest_stats": s_rest, "part1": part1}},
            "second": {"wall_s": round(second.seconds, 2), "peak_rss_mb": round(second.peak_rss_mb, 1), **s2},
            "ratio_wall": round(second.seconds / first_wall, 4),
            "note": args.note,
        })
        ingest_first = {"wall_s": first_wall, "peak_rss_mb": first_rss, **s1}
    elif not args.reuse or not (all_store / "docstore.sqlite").exists():
        first = ingest([PAPERS], all_store)
        second = ingest([PAPERS], all_store)
        s1, s2 = stats_of(first), stats_of(second)
        write_result("reingest", {
            "command": f"python -m pipeline ingest {PAPERS} --store STORE --json (no LLM), twice",
            "corpus": {"files": len(papers), "bytes": sum(p.stat().st_size for p in papers)},
            "first": {"wall_s": round(first.seconds, 2), "peak_rss_mb": round(first.peak_rss_mb, 1), **s1},
            "second": {"wall_s": round(second.seconds, 2), "peak_rss_mb": round(second.peak_rss_mb, 1), **s2},
            "ratio_wall": round(second.seconds / first.seconds, 4),
        })
        ingest_first = {"wall_s": first.seconds, "peak_rss_mb": first.peak_rss_mb, **s1}
    else:
        import json

        prior = RESULTS / "reingest.json"
        ingest_first = json.loads(prior.read_text())["first"] if prior.exists() else None

    # Cold starts.
    ours_one, ours_all = ours(one_store, args.repeats), ours(all_store, args.repeats)
    nb_one = notebook([ONE_PAPER], args.notebook_repeats)
    if args.notebook41_from:
        import json
        import time

        while not args.notebook41_from.exists():  # bench_notebook41.py still running beside us
            time.sleep(30)

        run = json.loads(args.notebook41_from.read_text())["run"]
        nb_all = {"runs": [run], "wall_s_median": run["wall_s"], "peak_rss_mb_max": run["peak_rss_mb"],
                  "note": f"read from {args.notebook41_from.name} (run beside the first ingest)"}
    else:
        nb_all = notebook([PAPERS], 1)
    write_result("cold_start", {
        "command": "benchmarks/bench_child_query.py (ours) vs benchmarks/bench_child_notebook.py (seed notebook), new process each",
        "query": QUERY,
        "one_paper": {"ours": ours_one, "notebook": nb_one, "ratio": round(nb_one["wall_s_median"] / ours_one["wall_s_median"], 2)},
        "papers41": {"ours": ours_all, "notebook": nb_all, "ratio": round(nb_all["wall_s_median"] / ours_all["wall_s_median"], 2)},
        "ours_growth_41_over_1": round(ours_all["wall_s_median"] / ours_one["wall_s_median"], 2),
    })

    # Throughput: pipeline ingest (first run) against raw embedding of the same texts.
    raw = nb_all["runs"][0]
    if ingest_first is not None:
        refs = sum(ingest_first["references"].values())
        write_result("throughput", {
            "command": "first run of benchmark 2 vs embed_s of the notebook child on the same 41 papers",
            "pipeline": {"wall_s": round(ingest_first["wall_s"], 2), "references": refs, "parents": ingest_first["parents"],
                         "refs_per_s": round(refs / ingest_first["wall_s"], 2)},
            "raw_embedding": {"embed_s": raw["embed_s"], "texts": raw["texts"], "chars": raw["chars"],
                              "texts_per_s": round(raw["texts"] / raw["embed_s"], 2)},
            "overhead_pct": round(100 * (ingest_first["wall_s"] - raw["embed_s"]) / raw["embed_s"], 1),
        })
        write_result("memory", {
            "command": "peak RSS (wait4 ru_maxrss) of the child processes above",
            "ingest_41_first_mb": round(ingest_first["peak_rss_mb"], 1),
            "query_process_41_mb": ours_all["peak_rss_mb_max"],
            "query_process_1_mb": ours_one["peak_rss_mb_max"],
            "notebook_process_41_mb": nb_all["peak_rss_mb_max"],
        })


if __name__ == "__main__":
    main()
