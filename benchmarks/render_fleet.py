"""docs/benchmarks.md §9 (fleet mode, issue 25) from benchmarks/results/fleet_retrieve_*.json and
fleet_ingest_*.json: retrieve and parent lookup with parents from PostgreSQL against SQLite; ingest
with the database against SQLite; two ingest workers against one. Each table names its command, date,
commit, load and store; a missing result says which command produces it instead of a number.

Wiring (render_bench.py): ``from render_fleet import render_fleet`` and ``out += render_fleet()`` before
the static sections, and §9 removed from benchmarks/benchmarks_static.md. Standalone: prints the section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
PREFERRED = ("papers41",)  # the store first; other labels (smaller stores) after it


def _load(kind: str) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"fleet_{kind}_*.json"))]
    return sorted(found, key=lambda r: (r.get("label") not in PREFERRED, r.get("label", "")))


def _how(r: dict[str, Any]) -> str:
    load = r.get("load1") or [r.get("load1_before"), None]
    load_s = "–".join(f"{x:g}" for x in load if x is not None) if isinstance(load, list) else f"{load:g}"
    return f"`{r['command']}` — {r['date']}, commit {r['commit']}, load {load_s} on {r.get('cpus', '?')} cores"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render_retrieve(r: dict[str, Any], letter: str) -> list[str]:
    size = r.get("size", {})
    out = [f"### 9{letter}. Parents from PostgreSQL against SQLite — {r['label']} "
           f"({size.get('documents', '?')} documents, {size.get('parents', '?')} parents, {size.get('references', '?')} references)\n",
           _how(r) + (f" ({r['note']})" if r.get("note") else "") + ". The SQLite state is copied with `pipeline migrate --to postgres`, so both read identical parents; "
           "vectors stay in the embedded engine; each row is a new process, the backends alternate.\n"]
    for part, title in (("lookup", "parent lookup alone (parents of 5 hits + 3 parents' JSON: what fleet mode changes)"),
                        ("retrieve", "retrieve end to end (chunk, top 3, 8 queries)")):
        rows = r["runs"].get(part) or {}
        if not rows:
            continue
        out += [f"| {title} | p50 ms | p95 ms | n |", "|---|---|---|---|"]
        out += [f"| {label} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | {v['n']} |" for label, v in rows.items()]
        out.append("")
    lookup = r["runs"].get("lookup") or {}
    sq = [v["p95_ms"] for k, v in lookup.items() if k.startswith("sqlite")]
    pg = [v["p95_ms"] for k, v in lookup.items() if k.startswith("postgres") and "check" not in k]
    if sq and pg:
        worst = max(pg) - min(sq)
        out.append(f"Parent lookup p95, PostgreSQL over SQLite: +{min(pg) - max(sq):.2f} to +{worst:.2f} ms "
                   f"(target +2 ms: {_met(worst <= 2.0)} in this run).\n")
    return out


def render_ingest(r: dict[str, Any], letter: str) -> list[str]:
    runs = r["runs"]
    out = [f"### 9{letter}. Ingest with the database, and two workers — {r['label']} ({r['documents']} documents)\n",
           _how(r) + f". Vectors: {r['vectors']}. Each run is cold (new store, new database, no ingest cache).\n",
           "| run | workers | embed threads each | wall s | CPU s | documents / s | documents per worker | load after |",
           "|---|---|---|---|---|---|---|---|"]
    threads = {"sqlite": "default", "postgres": "default", "one worker": "1", "two workers": "1"}
    for label, v in runs.items():
        out.append(f"| {label} | {v['workers']} | {threads.get(label, '?')} | {v['wall_s']:.1f} | {v['cpu_s']:.1f} | {v['docs_per_s']:.3f} | "
                   f"{' + '.join(str(x) for x in v['per_worker_documents'])} | {v.get('load1_after', '?')} |")
    pg, two = r["postgres_over_sqlite"], r["two_over_one"]
    if r["label"] in PREFERRED:
        out.append(f"\nPostgreSQL / SQLite wall time: {pg:.3f} (target ≤ 1.05: {_met(pg <= 1.05)}); two workers / one, "
                   f"documents per second: {two:.2f}× (target ≥ 1.8×: {_met(two >= 1.8)}).\n")
    else:  # a few documents on a busy machine prove the script, not the targets
        out.append(f"\nA try of the script on {r['documents']} documents, not a measurement of the targets (the machine's load moved "
                   f"the wall times; a worker's share is whole documents): PostgreSQL / SQLite wall {pg:.3f}, CPU "
                   f"{runs['postgres']['cpu_s'] / runs['sqlite']['cpu_s']:.3f}; two workers / one {two:.2f}×.\n")
    return out


def render_fleet() -> list[str]:
    out = ["## 9. Fleet mode: state in PostgreSQL against SQLite (issue 25)\n"]
    retrieve, ingest = _load("retrieve"), _load("ingest")
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    for r in retrieve:
        out += render_retrieve(r, next(letters))
    for r in ingest:
        out += render_ingest(r, next(letters))
    if not any(r.get("label") in PREFERRED for r in retrieve):
        out.append("Not run yet on the 41-paper store: `nice -n 10 .venv/bin/python benchmarks/fleet_retrieve.py "
                   "--store <41-paper store> --label papers41 --pool-check`.\n")
    if not any(r.get("label") in PREFERRED for r in ingest):
        out.append("Not run yet on the 41 papers: `nice -n 10 .venv/bin/python benchmarks/fleet_ingest.py` (on a quiet machine).\n")
    return out


if __name__ == "__main__":
    print("\n".join(render_fleet()))
