"""docs/benchmarks.md §1a and §3a: benchmarks 1, 2, 3 and 5 again on the embedded engine (issue 26), from
benchmarks/results/bench/commands_*.json (``bench_commands.py``) and threads_*.json (``bench_threads.py``)."""

from __future__ import annotations

from render_common import BENCH, load_bench

TARGETS = {  # issue 26, 41 papers, quiet 2-core machine
    "query --retrieve-only": "≤ 1.5 s CPU",
    "ingest (unchanged)": "≤ 1.0 s CPU, ≤ 2 s wall",
    "status": "≤ 0.7 s",
}


def _cell(r: dict | None) -> str:
    if r is None:
        return "—"
    return f"{r['cpu_s_median']:.2f} / {r['wall_s_median']:.2f} / {r['peak_rss_mb_max']:.0f}"


def render_commands() -> list[str]:
    one, many = load_bench("commands_1"), load_bench("commands_41")
    if not (one or many):
        return []
    out = ["### 1a. Every command as a new process, on the embedded engine (benchmarks 1, 2 and 5 again; issue 26)\n"]
    out.append("Median of the runs, each a new process: CPU s (user + system) / wall s / peak RSS MB.\n")
    out.append("| command | 1 paper (the sample) | 41 papers | target (41 papers) |")
    out.append("|---|---|---|---|")
    names = list((many or one)["commands"])
    for name in names:
        a = one["commands"].get(name) if one else None
        b = many["commands"].get(name) if many else None
        out.append(f"| `{name}` | {_cell(a)} | {_cell(b)} | {TARGETS.get(name, '')} |")
    runs = []
    for label, r in (("1 paper", one), ("41 papers", many)):
        if r:
            loads = [x["load_1m"] for c in r["commands"].values() for x in c["runs"]]
            runs.append(f"{label}: `{r['command']}`, commit {r['commit']}, {r['date']}, {r['repeats']} runs each, load {min(loads):.1f}–{max(loads):.1f}"
                        + (f" ({r['note']})" if r.get("note") else ""))
    out.append(
        "\n`ingest (unchanged)` is benchmark 2 (a scheduled run with nothing to do: `pipeline/ingest/quick.py`), "
        "`query --retrieve-only` benchmark 1 (a new process → first retrieval answered; the notebook's "
        "cold start, which embeds every reference first, is at least the raw embedding time of §3a), the peak RSS "
        "column benchmark 5. " + "; ".join(runs) + ".\n"
    )
    return out


def render_threads() -> list[str]:
    rows = sorted((p for p in BENCH.glob("threads*.json")), key=lambda p: p.name)
    data = [load_bench(p.stem) for p in rows]
    data = [d for d in data if d]
    if not data:
        return []
    out = ["### 3a. Ingest on every core against the raw embedding model (benchmark 3 again; issue 26)\n"]
    out.append("| papers | threads | ingest wall s | references | refs / s | raw embedding s (same threads) | overhead | ingest peak RSS MB | load before → after |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    notes = []
    for d in data:
        for r in d["runs"]:
            raw = r.get("raw_embedding")
            ing = r["ingest"]
            load = f"{r['load_before'][0]:.1f} → {r.get('load_after_raw', r['load_after_ingest'])[0]:.1f}"
            out.append(
                f"| {d['papers']} | {r['threads']} | {ing['wall_s']:.1f} | {ing['references']} | {ing['refs_per_s']:.1f} | "
                f"{raw['embed_s']:.1f} | **{r['overhead_pct']:+.1f} %** | {ing['peak_rss_mb']:.0f} | {load} |"
                if raw else
                f"| {d['papers']} | {r['threads']} | {ing['wall_s']:.1f} | {ing['references']} | {ing['refs_per_s']:.1f} | — | — | {ing['peak_rss_mb']:.0f} | {load} |"
            )
        speed = f"; {max(r['threads'] for r in d['runs'])} threads / 1 thread: **{d['speedup_refs_per_s']:.2f}×** references per second" if d.get("speedup_refs_per_s") else ""
        notes.append(f"`{d['command']}` (commit {d.get('commit', '?')}, {d['date']}){speed}" + (f" — {d['note']}" if d.get("note") else ""))
    out.append(
        "\nOverhead = ingest wall time (process start, PDF parsing, splitting, references, embedding, docstore and "
        "engine writes) / the raw model's time on the same reference texts at the same thread count − 1. "
        + "; ".join(notes) + ".\n"
    )
    return out
