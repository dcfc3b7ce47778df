"""The seed notebook's cold start on all 41 papers, alone (it embeds ~20k texts: about as long as a first
ingest). bench_papers.py reads it back with ``--notebook41-from benchmarks/results/bench/notebook41.json``.

    nice -n 10 .venv/bin/python benchmarks/bench_notebook41.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import PAPERS, PY, QUERY, run_child, write_result  # noqa: E402


def main() -> None:
    r = run_child([PY, "benchmarks/bench_child_notebook.py", str(PAPERS), "--query", QUERY])
    if r.code != 0:
        raise SystemExit(f"notebook child failed: {r.stderr[-3000:]}")
    write_result("notebook41", {
        "command": "benchmarks/bench_child_notebook.py ../shared/corpus/papers --query QUERY (new process)",
        "run": {"wall_s": round(r.seconds, 3), "peak_rss_mb": round(r.peak_rss_mb, 1), **r.json()},
    })


if __name__ == "__main__":
    main()
