"""docs/benchmarks.md: speed and memory, in the order a reader asks (first answer, ingest speed,
re-ingest, memory, latency against size, the service), from benchmarks/results/bench/*.json; the
embedded engine's sections come from benchmarks/render_edge.py."""

from __future__ import annotations

import re
from typing import Any

from render_common import ROOT, HEADER, load_bench, load_quality
from render_commands import render_commands, render_threads
from render_edge import render_edge
from render_fleet import render_fleet

def render_benchmarks() -> str:
    out = [HEADER.format(src="benchmarks/results/bench/*.json"), "# Benchmarks\n"]
    any_b = next((load_bench(n) for n in ("cold_start", "reingest", "throughput", "memory", "latency") if load_bench(n)), None)
    if any_b:
        m = any_b["machine"]
        out.append(
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB RAM, Python {m['python']}, {m['platform']}. "
            "The 2 cores were shared with other jobs during the runs (an LLM ingest among them): each section gives the "
            "1-minute load average at the end of its run; ratios measured in one run are more telling than absolute times. "
            "Embedding: int8 ONNX all-MiniLM-L6-v2, 1 thread; no LLM unless said. Qdrant: each section says which backend. "
            "Sections 1, 2, 3 and 5 were measured on 2026-11-28 with qdrant-client's local mode, before the embedded engine "
            "(qdrant-edge) became the default; §1a and §3a measure them again on the engine, with every command lean at start-up "
            "and ingest on every core (2026-12-06); section 7 measures the engine against local mode, and sections 7b–7f the engine alone.\n"
        )
    cs = load_bench("cold_start")
    if cs:
        out.append("## 1. Cold start: new process → first retrieval answered\n")
        out.append("| corpus | ours (rehydrate), median s | notebook (embed all, in-memory index), s | notebook / ours | ours peak RSS MB | notebook peak RSS MB |")
        out.append("|---|---|---|---|---|---|")
        for key, label in (("one_paper", "1 paper (acl2020, 15 p)"), ("papers41", "41 papers")):
            r = cs[key]
            out.append(
                f"| {label} | {r['ours']['wall_s_median']:.2f} | {r['notebook']['wall_s_median']:.1f} | **{r['ratio']:.1f}×** | "
                f"{r['ours']['peak_rss_mb_max']:.0f} | {r['notebook']['peak_rss_mb_max']:.0f} |"
            )
        o1, o41 = cs["one_paper"]["ours"]["runs"][0], cs["papers41"]["ours"]["runs"][0]
        out.append(
            f"\nOurs at 41 papers / at 1 paper: **{cs['ours_growth_41_over_1']:.2f}×**. Breakdown of one run (import / open store / first retrieval, s): "
            f"1 paper {o1['import_s']:.2f} / {o1['open_s']:.2f} / {o1['first_retrieve_s']:.3f}; 41 papers {o41['import_s']:.2f} / {o41['open_s']:.2f} / {o41['first_retrieve_s']:.3f}. "
            "Opening grows with the point count because Qdrant's local mode loads every point into memory on open; "
            "a Qdrant server (`QDRANT_URL`) keeps opening flat. No corpus text is embedded (`embedded_texts` = "
            f"{o41['embedded_texts']}).\n"
        )
        out.append(f"Command: `nice -n 10 .venv/bin/python benchmarks/bench_papers.py --reuse --repeats 3` (stores and first-ingest figures of benchmark 2 reused; {cs['date']}, load {cs['machine']['loadavg_1m']}).\n")
    ri = load_bench("reingest")
    if ri:
        a, b = ri["first"], ri["second"]
        out.append("## 2. Re-ingest of an unchanged corpus (41 papers, no LLM)\n")
        out.append("| run | wall s | embedded texts | LLM calls | cache hits / misses | files added / unchanged | peak RSS MB |")
        out.append("|---|---|---|---|---|---|---|")
        def v(x: Any) -> str:
            return "—" if x is None else str(x)

        if "parts" in a:  # the first run stopped early: only what its part measured
            a = {**a, "embedded_texts": None, "files_added": f"{a['parts']['part1'].get('files_in_part', '?')} of {a['files_added']}"}
        for label, r in (("first", a), ("second", b)):
            out.append(f"| {label} | {r['wall_s']:.1f} | {v(r['embedded_texts'])} | {r['llm_calls']} | {v(r['cache_hits'])} / {v(r['cache_misses'])} | {r['files_added']} / {r['files_unchanged']} | {r['peak_rss_mb']:.0f} |")
        out.append(f"\nSecond / first: **{ri['ratio_wall']:.3f}** ({100 * ri['ratio_wall']:.1f} %). Command: `{ri['command']}` ({ri['date']}, load {ri['machine']['loadavg_1m']}).\n")
        if ri.get("note"):
            out.append(ri["note"] + "\n")
    tp = load_bench("throughput")
    if tp:
        out.append("## 3. Ingest throughput against the raw embedding model\n")
        out.append("| run | papers | raw embedding s | texts | texts / s | pipeline ingest s | refs / s | overhead |")
        out.append("|---|---|---|---|---|---|---|---|")
        seq = load_bench("throughput_sequential")
        for label, t in (("side by side (one core each, same load)", tp), ("sequential (ingest at load 4–6, raw later at ≈2)", seq)):
            if not t:
                continue
            p, r = t["pipeline"], t["raw_embedding"]
            out.append(f"| {label} | {t.get('papers', 41)} | {r['embed_s']:.1f} | {r['texts']} | {r['texts_per_s']:.1f} | "
                       f"{p['wall_s']:.1f} | {p['refs_per_s']:.1f} | **{t['overhead_pct']:+.1f} %** |")
        out.append("\nOverhead = pipeline ingest wall time (process start, PDF parsing, splitting, references, embedding, "
                   "docstore and Qdrant writes) / raw embedding time of the same reference texts − 1. "
                   f"Side by side: `{tp['command']}` ({tp['date']}, load {tp['machine']['loadavg_1m']})"
                   + (f"; sequential: {seq['command']} ({seq['date']})." if seq else ".") + "\n")
    if llm_rows := llm_per_parent():
        out.append("With the LLM on (summary + questions per parent, 1 llama.cpp thread), from the ingest step of the quality runs:\n")
        out.append("| LLM | dataset | parents | ingest s | s per parent |")
        out.append("|---|---|---|---|---|")
        out += llm_rows
        out.append("")
    mem = load_bench("memory")
    if mem:
        out.append("## 5. Memory (peak RSS, 41 papers)\n")
        out.append("| process | peak RSS MB |")
        out.append("|---|---|")
        out.append(f"| ingest, first run | {mem['ingest_41_first_mb']:.0f} |")
        out.append(f"| query process (ours), 41 papers | {mem['query_process_41_mb']:.0f} |")
        out.append(f"| query process (ours), 1 paper | {mem['query_process_1_mb']:.0f} |")
        out.append(f"| notebook approach process, 41 papers | {mem['notebook_process_41_mb']:.0f} |")
        out.append(f"\n{mem['command']} ({mem['date']}).\n")
    lat = load_bench("latency")
    if lat:
        out.append("## 4. Retrieve latency against size (embedded Qdrant)\n")
        colls = lat.get("source_collections") or {"docs_children": lat["source_points"]}
        out.append(f"How: {lat['how']} (the 41-paper store holds {lat['source_points']:,} points: "
                   + ", ".join(f"{n} {c:,}" for n, c in colls.items()) + ").\n")
        modes = list(lat["sizes"][0]["modes"])
        out.append("| reference points | open s | " + " | ".join(f"{m} p50 / p95 ms" for m in modes) + " | peak RSS MB |")
        out.append("|---|---|" + "---|" * len(modes) + "---|")
        for s in lat["sizes"]:
            cells = " | ".join(f"{s['modes'][m]['p50_ms']:.0f} / {s['modes'][m]['p95_ms']:.0f}" for m in modes)
            out.append(f"| {s['points']:,} | {s['open_s']:.1f} | {cells} | {s['peak_rss_mb']:.0f} |")
        out.append(f"\nCommand: `{lat['command']}` ({lat['date']}, load {lat['machine']['loadavg_1m']}).\n")
        old = load_bench("latency_layout1")
        if old and "source_collections" in lat:
            out.append("Before layout 2 (parent self-references shared the children collection, so `base` and `chunk` "
                       "needed a `kind` filter, which embedded Qdrant evaluates point by point in Python), measured the "
                       f"same way on {old['date'][:10]} at load {old['machine']['loadavg_1m']} (`benchmarks/results/bench/latency_layout1.json`):\n")
            out.append("| reference points | chunk p50 / p95 ms | all p50 / p95 ms |")
            out.append("|---|---|---|")
            for s in old["sizes"]:
                c, a = s["modes"]["chunk"], s["modes"]["all"]
                out.append(f"| {s['points']:,} | {c['p50_ms']:.0f} / {c['p95_ms']:.0f} | {a['p50_ms']:.0f} / {a['p95_ms']:.0f} |")
            out.append("")
        out.append("Benchmarks 1, 2 and 5 (and the sequential row of 3) were measured with layout 1; the layout changes which collection a "
                   "self-reference is in, not how many points are written or loaded.\n")
    out += render_stage_latency()
    out += render_stage_throughput()
    out += render_edge()
    out += render_commands()
    out += render_threads()
    out += render_fleet()
    # Hand-measured sections (start-up, memory) kept verbatim: benchmarks/benchmarks_static.md.
    static = ROOT / "benchmarks" / "benchmarks_static.md"
    if static.exists():
        out.append(static.read_text())
    return in_reading_order("\n".join(out) + "\n")


# The order a reader asks in: the first answer, ingest speed, re-ingest, memory, latency against size,
# the service; then start-up. Sections keep their numbers (other documents cite them as §N).
READING_ORDER = ("## 1.", "### 1a.", "## 3.", "### 3a.", "### 3b.", "### 7b.", "## 2.", "## 5.", "## 8.", "## 4.", "### 4b.", "## 7.", "### 7f.", "### 7e.", "### 7d.", "### 7c.", "## 6.", "## 9.")


def in_reading_order(text: str) -> str:
    """The rendered benchmarks with their sections in ``READING_ORDER`` (unlisted ones keep their place at the end)."""
    parts = re.split(r"(?m)^(?=#{2,3} )", text)
    head, blocks = parts[0], parts[1:]
    def rank(block: str) -> int:
        return next((i for i, prefix in enumerate(READING_ORDER) if block.startswith(prefix)), len(READING_ORDER))
    return head + "".join(sorted(blocks, key=rank))


def render_stage_latency() -> list[str]:
    """§4 again per retrieval stage (dense, hybrid, hybrid + rerank): benchmarks/results/bench/latency_stages.json."""
    lat = load_bench("latency_stages")
    if not lat:
        return []
    out = ["### 4b. Retrieve latency per retrieval stage (the default is `hybrid`)\n",
           f"How: {lat['how']}; source: {lat['source_points']:,} points. Query embedding included "
           "(its median is in the last column); k=3, rerank of 10 candidates.\n"]
    modes = list(lat["sizes"][0]["modes"])
    out.append("| reference points | open s | " + " | ".join(f"{m} p50 / p95 ms" for m in modes) + " | query embedding p50 ms | peak RSS MB |")
    out.append("|---|---|" + "---|" * len(modes) + "---|---|")
    for s in lat["sizes"]:
        cells = " | ".join(f"{s['modes'][m]['p50_ms']:.0f} / {s['modes'][m]['p95_ms']:.0f}" for m in modes)
        emb = s["modes"][modes[0]].get("embed_p50_ms", 0.0)
        out.append(f"| {s['points']:,} | {s['open_s']:.1f} | {cells} | {emb:.0f} | {s['peak_rss_mb']:.0f} |")
    out.append(f"\nCommand: `{lat['command']}` ({lat['date']}, load {lat['machine']['loadavg_1m']}).\n")
    out.append("The BM25 search is what grows: qdrant-client's local mode scores sparse vectors point by point in "
               "Python (a profile shows `sparse_dot_product` once per point per query). Searching BM25 over the "
               "parents' self-references only (`bm25_scope=parents`, the default; ~1/18 of the points) keeps hybrid "
               "at ≈ +9 ms over dense at 2k references and ≈ +63 ms at 20k; with every collection (`bm25_scope=all`) "
               "the same run measured 62 / 69 ms and 401 / 443 ms (p50 / p95) at 17:20 UTC. A Qdrant server indexes "
               "sparse vectors natively; on a very large embedded store, `retrieval.hybrid=false` gives back dense-only "
               "latency (MRR@10 −0.03 on the dev sets). These are local-mode numbers; the edge engine (the default since issue 12) indexes sparse vectors in-process: §7.\n")
    return out


def render_stage_throughput() -> list[str]:
    """§3 again with BM25 vectors written, per embedder: benchmarks/results/bench/throughput_<embed>.json."""
    rows = []
    for name, label in (("throughput_minilm", "MiniLM-L6 (default) + BM25"), ("throughput_bge-small", "bge-small + BM25")):
        t = load_bench(name)
        if t:
            p, r = t["pipeline"], t["raw_embedding"]
            rows.append(f"| {label} | {t.get('papers')} | {r['embed_s']:.1f} | {r['texts']} | {r['texts_per_s']:.1f} | "
                        f"{p['wall_s']:.1f} | {p['refs_per_s']:.1f} | **{t['overhead_pct']:+.1f} %** | {t['date'][:16]}, load {t['machine']['loadavg_1m']} |")
    if not rows:
        return []
    return ["### 3b. Ingest throughput with BM25 vectors, per embedder (side by side, one core each)\n",
            "| embedder | papers | raw embedding s | texts | texts / s | pipeline ingest s | refs / s | overhead | date, load |",
            "|---|---|---|---|---|---|---|---|---|", *rows,
            "\nThe BM25 vector of every reference is computed at write time (tokenize, stem, hash) and stored in the same "
            "point; the raw side embeds the same texts with the same model. Commands: "
            + "; ".join(f"`{load_bench(n)['command']}`" for n in ("throughput_minilm", "throughput_bge-small") if load_bench(n)) + ".\n"]


def llm_per_parent() -> list[str]:
    rows = []
    for (variant, ds), rep in sorted(load_quality().items()):
        ing = rep.get("ingest", {})
        if "__" in variant or not rep.get("config", {}).get("enrich") or not ing.get("llm_calls"):
            continue
        rows.append(f"| {rep['config']['llm']} | {ds} | {ing['parents']} | {ing['seconds']:.0f} | {ing['seconds'] / ing['parents']:.1f} |")
    return rows
