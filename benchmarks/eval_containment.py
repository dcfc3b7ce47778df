"""Answer containment on mini_squadv2 for the extract code of a git revision (before/after in docs/quality.md).

Same measure as `python -m pipeline eval ... --answers` (pipeline/eval/answers.py): among the questions whose
top-3 parents contain the labelled answer (normalised), the share whose extract contains it. The retrieval is
today's; only ``ExtractiveAnswerer`` comes from ``--rev`` (its extract.py, loaded from git; "worktree" = the
current code). Appends the result to benchmarks/results/answers/containment.json.

    nice -n 10 .venv/bin/python benchmarks/eval_containment.py --rev bd380f8 --label "before (sentences as split by HEAD before issue 22)"
    nice -n 10 .venv/bin/python benchmarks/eval_containment.py --rev worktree --label "after"
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PIPELINE_LLM__PROVIDER", "none")

from pipeline.config import Settings  # noqa: E402
from pipeline.eval.answers import normalise_answer  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402

DATASET = ROOT.parent / "shared" / "corpus" / "llama_datasets" / "mini_squadv2"
OUT = ROOT / "benchmarks" / "results" / "answers" / "containment.json"


def answerer_class(rev: str) -> type:
    if rev == "worktree":
        from pipeline.retrieve.extract import ExtractiveAnswerer

        return ExtractiveAnswerer
    code = subprocess.run(["git", "show", f"{rev}:pipeline/retrieve/extract.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "extract_at_rev.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("extract_at_rev", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["extract_at_rev"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.ExtractiveAnswerer


def main() -> None:
    from pipeline.retrieve.engine import Engine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="worktree")
    ap.add_argument("--label", required=True)
    ap.add_argument("--store", type=Path, default=ROOT / "storage")
    args = ap.parse_args()
    store = sorted((args.store / "eval").glob("mini_squadv2-*"), key=lambda p: p.stat().st_mtime)[-1]
    dataset = load_dataset(DATASET)
    eligible = contained = 0
    with Engine(Settings(store=store), load_llm=False) as engine:
        parents = engine.store.parents

        def locate(source):  # type: ignore[no-untyped-def]
            node = parents.get(source.parent_id)
            return (getattr(node, "start_char_idx", None) if node else None), parents.page_offsets(source.doc_id)

        answerer = answerer_class(args.rev)(scorer=engine.reranker.score, sentences=engine.settings.answer.sentences)
        for ex in dataset.examples:
            gold = normalise_answer(ex.reference_answer)
            result = engine.retrieve(ex.query, top_k=3, judge=False)
            if gold and gold in normalise_answer(" ".join(s.text for s in result.sources)):
                eligible += 1
                text, _ = answerer.answer(ex.query, result.sources, locate)
                contained += gold in normalise_answer(text)
    row = {
        "label": args.label, "rev": args.rev, "eligible": eligible, "contained": contained, "share": round(contained / eligible, 4),
        "command": f"benchmarks/eval_containment.py --rev {args.rev}", "date": date.today().isoformat(),
    }
    data = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    data["runs"] = [r for r in data["runs"] if r["label"] != args.label] + [row]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
