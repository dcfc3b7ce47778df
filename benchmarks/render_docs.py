"""Regenerate docs/quality.md and docs/benchmarks.md from benchmarks/results/quality/*.json and benchmarks/results/bench/*.json.

Never edit those two pages by hand: change the runs, then run this.

    .venv/bin/python benchmarks/render_docs.py
"""

from __future__ import annotations

# The page renderers beside this file (on sys.path as the script's folder): one module a page, its
# long sections in modules of their own (render_tuning, render_trust, render_edge).
from render_bench import render_benchmarks
from render_common import DOCS
from render_quality import render_quality


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    (DOCS / "quality.md").write_text(render_quality())
    (DOCS / "benchmarks.md").write_text(render_benchmarks())
    print("wrote docs/quality.md and docs/benchmarks.md")


if __name__ == "__main__":
    main()
