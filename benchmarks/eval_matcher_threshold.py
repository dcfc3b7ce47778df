"""How much of the remaining MRR gap is the relevance label, not the ranking (issue 10).

``pipeline eval`` counts a returned parent as relevant when it holds ≥ 50 % of the reference
context's windows (``pipeline/eval/matcher.py``). A reference context that straddles two 1024-token
parents 55/45 makes the 45 % parent "irrelevant", even though it holds almost half of the passage
the question was written from. This replays the default retrieval (mode chunk, k=10) once per
question and scores the same ranked lists at lower thresholds. The official metric stays 0.5: this
table only says where the gap to the target lies; it is not a result to quote as quality.

    PIPELINE_LLM__PROVIDER=none nice -n 10 .venv/bin/python benchmarks/eval_matcher_threshold.py \
        DATASET_DIR EVAL_STORE [DATASET_DIR EVAL_STORE ...] --out benchmarks/results/tuning/matcher_threshold.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import merge_results, replay_args  # noqa: E402

from pipeline.config import Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.matcher import RelevanceMatcher, normalise  # noqa: E402
from pipeline.eval.metrics import hit_at_k, mean, reciprocal_rank_at_k  # noqa: E402
from pipeline.retrieve.engine import Engine  # noqa: E402
from pipeline.store.docstore import ParentStore  # noqa: E402

K = 10
THRESHOLDS = (0.5, 0.4, 0.3, 0.2)


def main() -> None:
    args, groups = replay_args(__doc__, ("DATASET_DIR", "EVAL_STORE"))
    results = {}
    for dataset_dir, store_dir in groups:
        dataset, store = load_dataset(Path(dataset_dir)), Path(store_dir)
        parents = ParentStore(store / "docstore.sqlite")
        try:
            norms = {pid: normalise(node.get_content()) for pid in parents.ids() if (node := parents.get(pid)) is not None}
        finally:
            parents.close()
        scored: dict[float, tuple[list[float], list[float]]] = {t: ([], []) for t in THRESHOLDS}
        with Engine(Settings(store=store), load_llm=False) as engine:
            embed = engine.embedder.model_name
            for ex in dataset.examples:
                sources = engine.retrieve(ex.query, "chunk", K).sources
                scores = [s.score for s in sources]
                for t in THRESHOLDS:
                    matcher = RelevanceMatcher(ex.reference_contexts, threshold=t)
                    relevant = [matcher.matches_normalised(norms.get(s.parent_id) or normalise(s.text)) for s in sources]
                    scored[t][0].append(hit_at_k(relevant, K, scores))
                    scored[t][1].append(reciprocal_rank_at_k(relevant, K, scores))
        results[f"{dataset.name}__{embed}"] = {
            "examples": len(dataset.examples),
            "thresholds": {str(t): {"hit@10": round(mean(h), 4), "mrr@10": round(mean(r), 4)} for t, (h, r) in scored.items()},
        }
        print(dataset.name, results[f"{dataset.name}__{embed}"]["thresholds"], flush=True)
    stamp = {"command": "benchmarks/eval_matcher_threshold.py " + " ".join(args.groups), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    merge_results(args.out, {key: {**value, **stamp} for key, value in results.items()})


if __name__ == "__main__":
    main()
