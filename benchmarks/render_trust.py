"""The "Answers an application can trust" section of docs/quality.md (issue 22), from the result files of
benchmarks/fit_confidence.py (confidence/report.json), `python -m pipeline eval --negatives ... --answers`
(answers/*.json) and the containment before/after record (answers/containment.json).

Imported by benchmarks/render_docs.py; a module of its own to keep that one from growing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _f(x: Any) -> str:
    return "—" if x is None or x != x else f"{x:.3f}"


def render_trust() -> list[str]:
    report = _load(RESULTS / "confidence" / "report.json")
    if report is None:
        return []
    out = ["## Answers an application can trust: confidence, abstention, clean extracts (issue 22)\n"]
    out.append(
        "Every result carries `confidence` (estimated probability that the top sources hold the answer) and "
        "`answerable` (`confidence >= retrieval.min_confidence`, default 0.5, in the documents' language). "
        "The estimate is a logistic regression over signals measured per query (pipeline/retrieve/confidence.py): "
        "the best dense cosine, the cosine margin between the first two parents, log(1 + best BM25 score), the share of "
        "the query's content words in a top parent, and the cross-encoder's logit for the best passage of the top three "
        "parents and of the first. Positives: a set's questions against its own eval store, where the right parent is in "
        "the top 3; negatives: the same questions against every other set's store, and 60 general-knowledge questions "
        "(pipeline/eval/data/general_questions.txt). Both classes weigh the same in the fit.\n"
    )
    out.append(
        f"Measured {report['date']} with `nice -n 10 .venv/bin/python benchmarks/fit_confidence.py --write` "
        f"(LLM off, mode all, top {report['top_k']}, at most {report['per_set']} questions per set; stores built by "
        "`PIPELINE_LLM__PROVIDER=none python -m pipeline eval <set> --modes all --top-k 3`). Leave-one-set-out: the model "
        "reported for a set was fitted on rows involving neither its questions nor its store; the shipped model is the "
        f"refit on all rows (`pipeline/retrieve/confidence.json`). Threshold {report['threshold']} for every set.\n"
    )
    for name, title in (("full", "with the cross-encoder (shipped)"), ("no_cross_encoder", "without the cross-encoder (fallback if its weights fail)")):
        part = report[name]
        out.append(f"**{title}** — held-out sets:\n")
        out.append("| held-out set | answerable (positives) | negatives | AUROC | answered | refused |")
        out.append("|---|---|---|---|---|---|")
        for held, r in part["held_out"].items():
            out.append(f"| {held} | {r['positives']} | {r['negatives']} | {_f(r['auroc'])} | {_f(r['answered'])} | {_f(r['refused'])} |")
        p = part["held_out_pooled"]
        out.append(f"| **pooled** | {p['positives']} | {p['negatives']} | **{_f(p['auroc'])}** | **{_f(p['answered'])}** | **{_f(p['refused'])}** |")
        r = part["refit_on_all_in_sample"]
        out.append(f"\nRefit on all (in-sample, for reference): AUROC {_f(r['auroc'])}, answered {_f(r['answered'])}, refused {_f(r['refused'])}.\n")
    out.append(
        f"Questions in another language (German, French, Spanish, Italian, Portuguese, Dutch, Chinese, Japanese, Russian), "
        f"asked of every store: {report['other_language_detected']} of {report['other_language_questions']} refused as `reason: language`. "
        f"Own questions whose right parent was not in the top 3 (left out of both groups): {report['own_questions_missed']}. "
        f"Median retrieve time with the confidence signals: {report['retrieve_ms_p50']:.0f} ms.\n"
    )
    evals = sorted((RESULTS / "answers").glob("eval_*.json")) if (RESULTS / "answers").exists() else []
    rows = [(p.stem[5:], _load(p)) for p in evals]
    rows = [(n, d) for n, d in rows if d and d.get("answerability")]
    if rows:
        out.append("`eval` itself reports the same metrics for one store (its set's questions against the given negatives):\n")
        out.append("| dataset | command | answerable | negatives | AUROC | answered | refused |")
        out.append("|---|---|---|---|---|---|---|")
        for name, d in rows:
            a = d["answerability"]
            out.append(f"| {name} | `{d.get('command', '')}` | {a['positives']} | {a['negatives']} | {_f(a['auroc'])} | {_f(a['answered'])} | {_f(a['refused'])} |")
        out.append("")
    contain = _load(RESULTS / "answers" / "containment.json")
    if contain:
        out.append("### Answer containment (mini_squadv2)\n")
        out.append(
            "Share of questions whose labelled answer (normalised: lower case, no punctuation or articles) is in the printed "
            "extract, among those whose top-3 parents contain it.\n"
        )
        out.append("| extract | eligible | contained | share | command | date |")
        out.append("|---|---|---|---|---|---|")
        for row in contain["runs"]:
            out.append(f"| {row['label']} | {row['eligible']} | {row['contained']} | {_f(row['share'])} | `{row['command']}` | {row['date']} |")
        if contain.get("note"):
            out.append("\n" + contain["note"])
        out.append("")
    return out
