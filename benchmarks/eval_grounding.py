"""Measure the grounding rule (pipeline/retrieve/grounding.py) on labelled answers, without an LLM.

Supported answers: each set's reference answers (written from the reference context) against the top-3
parents retrieved for their question from the set's own store, where the right parent is among them; the
rule should keep them. Unsupported answers: the same answers against the top-3 parents retrieved for the
same question from another set's store (the rule should replace them), and the supported answers with
every number changed (+1 on its last digit: the rule should replace them). Writes
benchmarks/results/answers/grounding.json.

    nice -n 10 .venv/bin/python benchmarks/eval_grounding.py --per-set 30
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PIPELINE_LLM__PROVIDER", "none")

from pipeline.config import Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.matcher import RelevanceMatcher  # noqa: E402
from pipeline.retrieve.grounding import check, numbers  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "llama_datasets"
SETS = ("paul_graham_essay", "blockchain_solana", "history_of_alexnet", "mini_squadv2")
OUT = ROOT / "benchmarks" / "results" / "answers" / "grounding.json"


def store_of(root: Path, name: str) -> Path:
    return sorted((root / "eval").glob(f"{name}-*"), key=lambda p: p.stat().st_mtime)[-1]


def bump(text: str) -> str:
    """Every number with its last digit changed (81.1M → 81.2M)."""
    return re.sub(r"(?<![\w.])(\d(?:[\d,]*\d)?(?:\.\d+)?)", lambda m: m.group(1)[:-1] + str((int(m.group(1)[-1]) + 1) % 10), text)


def main() -> None:
    from pipeline.retrieve.engine import Engine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=ROOT / "storage")
    ap.add_argument("--per-set", type=int, default=30)
    args = ap.parse_args()
    sets = {n: [ex for ex in load_dataset(CORPUS / n).examples if ex.reference_answer][: args.per_set] for n in SETS}
    kept, replaced_other, replaced_numbers = [], [], []
    for i, name in enumerate(SETS):
        other = SETS[(i + 1) % len(SETS)]
        with Engine(Settings(store=store_of(args.store, name)), load_llm=False) as engine:
            scorer = engine.reranker.score
            for ex in sets[name]:
                sources = engine.retrieve(ex.query, top_k=3, judge=False).sources
                matcher = RelevanceMatcher(ex.reference_contexts)
                if not any(matcher.matches(s.text) for s in sources):
                    continue
                kept.append(check(ex.reference_answer, sources, scorer, ex.query).ok)
                if numbers(ex.reference_answer):
                    replaced_numbers.append(not check(bump(ex.reference_answer), sources, scorer, ex.query).ok)
            # This store's parents as the "sources" of the next set's answers: they do not hold them.
            for ex in sets[other]:
                sources = engine.retrieve(ex.query, top_k=3, judge=False).sources
                replaced_other.append(not check(ex.reference_answer, sources, scorer, ex.query).ok)
    row = {
        "date": date.today().isoformat(), "per_set": args.per_set,
        "supported_kept": round(sum(kept) / len(kept), 4), "supported_n": len(kept),
        "other_store_replaced": round(sum(replaced_other) / len(replaced_other), 4), "other_store_n": len(replaced_other),
        "numbers_changed_replaced": round(sum(replaced_numbers) / len(replaced_numbers), 4), "numbers_changed_n": len(replaced_numbers),
        "command": f"benchmarks/eval_grounding.py --per-set {args.per_set}",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
