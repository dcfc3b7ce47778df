"""docs/quality.md: the retrieval-quality page (hit rate and MRR per mode and variant, the defaults chosen
from them), with its sections from benchmarks/render_trust.py and benchmarks/render_tuning.py."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from render_common import DATASETS, HEADER, MODES, f3, load_quality
from render_trust import render_trust  # benchmarks/render_trust.py (issue 22)
from render_tuning import render_stages, render_tuning

SEED = """Seed notebook (LlamaIndex, Llama 2 paper, 194 generated questions, bge-small-en, OpenAI LLM for
metadata, top_k 10): hit rate / MRR — base 0.778 / 0.563, chunk refs 0.897 / 0.691, metadata refs
0.892 / 0.718. Different paper, questions, embedding model and LLM: compare the *gaps* to base, not the
absolute numbers."""

def quality_table(reports: dict[str, dict[str, Any]], modes: tuple[str, ...]) -> list[str]:
    lines = ["| dataset (questions) | mode | hit@2 | MRR@2 | hit@10 | MRR@10 | ΔMRR@10 vs base |", "|---|---|---|---|---|---|---|"]
    for ds in DATASETS:
        rep = reports.get(ds)
        if rep is None:
            continue
        res = rep["results"]
        base = res.get("base", {}).get("mrr@10")
        for mode in modes:
            r = res.get(mode)
            if r is None:
                continue
            delta = "" if base is None or mode == "base" else f"{r['mrr@10'] - base:+.3f}"
            label = f"{ds} ({rep['examples']})" if mode == modes[0] or mode == next(m for m in modes if m in res) else ""
            lines.append(f"| {label} | {mode} | {f3(r.get('hit@2'))} | {f3(r.get('mrr@2'))} | {f3(r.get('hit@10'))} | {f3(r.get('mrr@10'))} | {delta} |")
    return lines


MODES_NOTE = """Modes, as in the seed notebook: `base` searches the parents' self-references (each 1024-token
parent embedded whole); `chunk` adds the 128/256/512-token child chunks to them, `metadata` adds the
LLM summaries and questions, `all` searches everything. A parent scores its best reference."""

CHOICES = """**Defaults chosen from these numbers** (tables below):

- *Fusion*: `max` (a parent scores its best reference; summary and question scores are first
  multiplied by `summary_weight` and `question_weight`). Reciprocal-rank fusion lost in every mode
  and dataset, with any rank constant (1, 5, 20, 60: tuning tables): most parents appear in every
  per-collection list of a small corpus, so RRF mostly counts lists, not ranks.
- *Weights*: summary 0.9, question 0.7. An LLM-written question resembles any question more than a
  text passage does, so at weight 1.0 questions push relevant text down (`__metaw1`); summaries are
  the stronger LLM reference (`summary` vs `questions_5` below). Over the six dataset × LLM runs this
  pair gave the highest total MRR@10 for `all` and for `metadata` in the tuning replay (summary
  0.8–1.0 × question 0.7–0.9), ahead of one shared weight (`__metaw07`, `__metaw08`: the previous
  default, `__metaw1`).
- *Questions*: five nodes. One joined node is no better (`questions_5` vs `questions_1` below: it
  wins on three runs and loses on three, by 0.04 MRR@10 at most), and five nodes let each question match alone.
- *Long parents*: the self-reference is the length-weighted mean of the parent's 256-word-piece
  windows. A truncating embedder (`parent_first`) would make base far weaker; one vector per window
  (`parent_maxwin`) is stronger but is chunking by another name, which the chunk references already do.
- *Goal status* (summary table): chunk references add +0.10 to +0.12 MRR@10 over base (paul_graham_essay
  +0.097); `all` is at or above the best single mode in five of six runs (history_of_alexnet with
  SmolLM2: 0.001 below). Metadata references do not reach +0.10 with either offline LLM: alone, their
  summaries and questions score below base (`summary`, `questions_5` below), so added to base they
  gain +0.03 at most. The seed notebook's metadata gain came from an OpenAI LLM."""


def weights(cfg: dict[str, Any]) -> str:
    if "summary_weight" in cfg:
        return f"summary weight {cfg['summary_weight']}, question weight {cfg['question_weight']}"
    return f"summary and question weight {cfg.get('metadata_weight', 1.0)}"


def summary_table(by_variant: dict[str, dict[str, Any]]) -> list[str]:
    """One row per dataset and LLM (default retrieval settings): MRR@10 of base and the gains over it."""
    out = ["## Summary (MRR@10, default retrieval settings)\n", MODES_NOTE + "\n",
           "| dataset | LLM | base | chunk | metadata | all | best single | all ≥ best single |", "|---|---|---|---|---|---|---|---|"]
    for ds in DATASETS:
        for variant in sorted(v for v in by_variant if "__" not in v):
            rep = by_variant[variant].get(ds)
            if rep is None or "base" not in rep["results"]:
                continue
            r = {m: rep["results"][m]["mrr@10"] for m in MODES if m in rep["results"]}
            best = max((m for m in ("base", "chunk", "metadata") if m in r), key=r.get)
            delta = lambda m: f"{r[m]:.3f} ({r[m] - r['base']:+.3f})" if m in r else "—"  # noqa: E731
            ok = "yes" if r.get("all", -1) >= r[best] - 1e-9 else f"no ({r.get('all', 0) - r[best]:+.3f})"
            out.append(f"| {ds} | {variant} | {r['base']:.3f} | {delta('chunk')} | {delta('metadata')} | {delta('all')} | {best} | {ok} |")
    return out + [""]


def render_quality() -> str:
    q = load_quality()
    by_variant: dict[str, dict[str, Any]] = defaultdict(dict)
    for (variant, ds), rep in q.items():
        by_variant[variant][ds] = rep
    out = [HEADER.format(src="benchmarks/results/quality/*.json"), "# Retrieval quality\n"]
    out.append(
        "Hit rate and MRR of each retrieval mode on the llama-datasets question sets in `../shared/corpus/llama_datasets`, "
        "measured with `python -m pipeline eval` (each k is its own retrieval, exactly what `query --top-k k` returns). "
        "A returned parent counts as relevant when it holds ≥ 50 % of the reference context's 50-character windows "
        "(normalised text), or, when shorter, ≥ 50 % of its own windows are in the reference: see `pipeline/eval/matcher.py`. "
        "*Oracle* is the share of questions whose reference is found in some parent at all.\n"
    )
    out.append(SEED + "\n")
    out += render_trust()
    out += render_stages()
    out += summary_table(by_variant)
    out.append(CHOICES + "\n")
    order = sorted(by_variant, key=lambda v: (v.count("__"), v))
    for variant in order:
        reports = by_variant[variant]
        any_rep = next(iter(reports.values()))
        cfg = any_rep.get("config", {})
        out.append(f"## {variant}\n")
        out.append(
            f"LLM `{cfg.get('llm')}` (enrich {cfg.get('enrich')}, {cfg.get('questions')} questions per parent), embedding `{cfg.get('embed')}` "
            f"(int8 all-MiniLM-L6-v2), parents {cfg.get('parent_chunk_size')} tokens, fusion `{cfg.get('fusion')}`, {weights(cfg)}, overfetch {cfg.get('overfetch')}. "
            f"Oracle coverage: " + ", ".join(f"{ds} {reports[ds]['oracle_coverage']:.3f}" for ds in DATASETS if ds in reports) + ".\n"
        )
        modes = MODES if cfg.get("enrich") else tuple(m for m in MODES if m != "metadata")
        out += quality_table(reports, modes)
        checks = []
        for ds in DATASETS:
            res = reports.get(ds, {}).get("results", {})
            if "base" not in res:
                continue
            base = res["base"]["mrr@10"]
            singles = {m: res[m]["mrr@10"] for m in ("base", "chunk", "metadata") if m in res}
            refs_ok = all(res[m]["mrr@10"] >= base + 0.10 for m in ("chunk", "metadata") if m in res and m in modes)
            all_ok = "all" in res and res["all"]["mrr@10"] >= max(singles.values()) - 1e-9
            checks.append(f"{ds}: every reference mode ≥ base + 0.10 {'yes' if refs_ok else 'no'}, all ≥ best single mode {'yes' if all_ok else 'no'}")
        if checks:
            out.append("\nGoal (MRR@10): " + "; ".join(checks) + ".")
        cmd_env = []
        if cfg.get("llm") not in (None, "smollm2", "none"):
            cmd_env.append(f"PIPELINE_LLM__MODEL={cfg.get('llm')}")
        if cfg.get("fusion") != "max":
            cmd_env.append(f"PIPELINE_RETRIEVAL__FUSION={cfg.get('fusion')}")
        if not cfg.get("enrich"):
            cmd_env += ["PIPELINE_LLM__PROVIDER=none", "PIPELINE_INGEST__ENRICH=false"]
        if "summary_weight" not in cfg and cfg.get("metadata_weight") is not None:
            cmd_env.append(f"PIPELINE_RETRIEVAL__METADATA_WEIGHT={cfg['metadata_weight']}")
        if cfg.get("llm") == "smollm2":
            out.append(
                "\nThe SmolLM2 stores were ingested with the enricher as it was before commit c615d4c (a second "
                "questions call when the model wrote fewer than 5); retrieval-only variants re-use them "
                "(`benchmarks/eval_quality.py --eval-store-fp 107016acea`), so the variants differ only in retrieval."
            )
        dates = sorted({reports[d]["date"][:10] for d in reports})
        out.append(
            f"\nCommand, per dataset: `{' '.join(cmd_env + ['python -m pipeline eval ../shared/corpus/llama_datasets/DATASET --top-k 2,10'])}` "
            f"(batch: `benchmarks/eval_quality.py`). Date: {', '.join(dates)}.\n"
        )
    out += render_tuning()
    return "\n".join(out) + "\n"
