"""Would both offline embedders together rank better than MiniLM alone? (issue 10, lever 2)

bge-small alone ranks below MiniLM on the dev sets (docs/quality.md). Two embedders can still err
on different questions, so this replays the default retrieval (mode chunk, hybrid, support) of a
MiniLM store and a bge-small store of the same dataset, min-max normalises each top-``DEPTH``
parent list and fuses them, MiniLM's share ``w``. A store would have to hold and a query to
compute both vectors: twice the embedding time at ingest and per query, so it must gain clearly.
Parents are matched across the two stores by their text (both split the same way).

    PIPELINE_LLM__PROVIDER=none nice -n 10 .venv/bin/python benchmarks/tune_ensemble.py \
        DATASET_DIR MINILM_STORE BGE_STORE [DATASET_DIR MINILM_STORE BGE_STORE ...] \
        --out benchmarks/results/tuning/ensemble.json
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import merge_results, replay_args  # noqa: E402
from tune_hybrid import metrics  # noqa: E402  (hit/MRR at 2 and 10, as eval computes them)

from pipeline.config import Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.matcher import RelevanceMatcher, normalise  # noqa: E402
from pipeline.retrieve.engine import Engine  # noqa: E402

K = 10
DEPTH = 20  # parents taken from each embedder's ranking before fusing
WEIGHTS = (0.4, 0.5, 0.6, 0.7)

Ranking = list[tuple[str, float]]


def rankings(store: Path, queries: list[str]) -> tuple[list[Ranking], dict[str, str], str]:
    """Each query's default top-``DEPTH`` parents as (text key, score), the texts, and the store's model."""
    out, texts = [], {}
    with Engine(Settings(store=store), load_llm=False) as engine:
        for q in queries:
            row = []
            for s in engine.retrieve(q, "chunk", DEPTH).sources:
                key = hashlib.sha1(s.text.encode()).hexdigest()
                texts[key] = s.text
                row.append((key, s.score))
            out.append(row)
        return out, texts, engine.embedder.model_name


def normalised(row: Ranking) -> dict[str, float]:
    if not row:
        return {}
    hi, lo = row[0][1], row[-1][1]
    return {k: (sc - lo) / (hi - lo) if hi > lo else 1.0 for k, sc in row}


def fused(a: Ranking, b: Ranking, w: float) -> Ranking:
    na, nb = normalised(a), normalised(b)
    return sorted(((k, w * na.get(k, 0.0) + (1 - w) * nb.get(k, 0.0)) for k in na.keys() | nb.keys()), key=lambda x: -x[1])


def main() -> None:
    args, groups = replay_args(__doc__, ("DATASET_DIR", "MINILM_STORE", "BGE_STORE"))
    results = {}
    for ds_dir, first, second in groups:
        ds = load_dataset(Path(ds_dir))
        queries = [ex.query for ex in ds.examples]
        started = time.perf_counter()
        a, texts_a, model_a = rankings(Path(first), queries)
        b, texts_b, model_b = rankings(Path(second), queries)
        texts = {**texts_a, **texts_b}
        relevant = []
        for ex, ra, rb in zip(ds.examples, a, b):
            matcher = RelevanceMatcher(ex.reference_contexts)
            relevant.append({k: matcher.matches_normalised(normalise(texts[k])) for k, _ in ra + rb})
        table = {model_a: metrics(a, relevant), model_b: metrics(b, relevant)}
        for w in WEIGHTS:
            table[f"both-w{w}"] = metrics([fused(x, y, w) for x, y in zip(a, b)], relevant)
        results[ds.name] = {
            "examples": len(ds.examples), "models": [model_a, model_b], "depth": DEPTH, "table": table,
            "seconds": round(time.perf_counter() - started, 1), "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "command": "benchmarks/tune_ensemble.py " + " ".join(args.groups),
        }
        print(ds.name, {k: (v["hit@10"], v["mrr@10"]) for k, v in table.items()}, flush=True)
    merge_results(args.out, results)


if __name__ == "__main__":
    main()
