"""Benchmarks 1, 2 and 5 on the embedded engine (issue 26): what each command costs a new process.

For a store (the bundled sample's, or the 41 papers' built by ``bench_threads.py --keep``), each command
runs ``--repeats`` times as a new process; recorded per command: wall and CPU seconds (user + system,
from ``wait4``) and peak RSS, median and all runs, with the load average before each. Commands:
``query --retrieve-only`` (cold start of a query process), the default ``query`` (extractive answer
with confidence), ``ingest`` of the unchanged corpus (benchmark 2: a scheduled run with nothing to
do), ``status`` and ``docs list``. Targets (issue 26, quiet 2-core machine, 41 papers): retrieve-only
≤ 1.5 s CPU, unchanged ingest ≤ 1.0 s CPU and ≤ 2 s wall, status ≤ 0.7 s.

    .venv/bin/python benchmarks/bench_commands.py --store /work/bench/papers41 --corpus ../shared/corpus/papers --out commands_41
    .venv/bin/python benchmarks/bench_commands.py --store storage/sample --corpus samples --out commands_1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import NO_LLM, PY, QUERY, ROOT, clean_env, write_result  # noqa: E402


def timed(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall, CPU (user + system) and peak RSS of one new process running ``args``."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, env=clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(args)} exited {code}: {err[-2000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "load_1m": round(load, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True, help="the folder the store was ingested from (for the unchanged ingest)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="commands")
    args = ap.parse_args()
    store, corpus = str(args.store.resolve()), str(args.corpus.resolve())
    commands = {
        "query --retrieve-only": ["query", "--retrieve-only", "--json", QUERY],
        "query (extractive, default)": ["query", "--json", QUERY],
        "ingest (unchanged)": ["ingest", corpus, "--json"],
        "status": ["status", "--json"],
        "docs list": ["docs", "list", "--json"],
    }
    timed([PY, "-m", "pipeline", "status", "--store", store], NO_LLM)  # page cache warm for every command alike
    results = {}
    for name, cmd in commands.items():
        runs = [timed([PY, "-m", "pipeline", *cmd, "--store", store], NO_LLM) for _ in range(args.repeats)]
        results[name] = {
            "wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 3),
            "cpu_s_median": round(statistics.median(r["cpu_s"] for r in runs), 3),
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
            "runs": runs,
        }
        print(name, results[name]["cpu_s_median"], results[name]["wall_s_median"], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    write_result(args.out, {
        "command": "benchmarks/bench_commands.py " + " ".join(sys.argv[1:]),
        "commit": commit,
        "store": store,
        "repeats": args.repeats,
        "commands": results,
    })


if __name__ == "__main__":
    main()
