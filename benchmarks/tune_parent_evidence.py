"""Two more levers for issue 10, replayed offline on built eval stores: how a parent sums its evidence,
and a cross-encoder reading the parent's own text instead of its best reference.

Why a script apart from ``eval``: each lever has a few settings and is cheap to replay once every
query's references and cross-encoder logits are cached. Per query this searches every collection of
chunk mode, dense and BM25 (``ParentRetriever._search``), then scores the first 15 parents of the
default ranking with the cross-encoder over overlapping 160-word windows of the parent text (stride
120, 256 word pieces each: a 1024-token parent is ~5 windows). Replayed:

- ``g``: a parent's dense score is its best reference plus ``g`` × the sum of its next two (several
  matching children as evidence, not the best one alone); 0 is today's MAX;
- ``w``: dense weight of the relative hybrid fusion (default 0.7); ``bmall``: BM25 over every collection;
- ``+ceN-bB``: the first N parents re-scored as B·first stage + (1−B)·sigmoid(best window logit).

    PIPELINE_LLM__PROVIDER=none nice -n 10 .venv/bin/python benchmarks/tune_parent_evidence.py \
        DATASET_DIR EVAL_STORE [DATASET_DIR EVAL_STORE ...] --out benchmarks/results/tuning/parent_evidence.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import merge_results  # noqa: E402

from llama_index.core.schema import QueryBundle  # noqa: E402

from pipeline.config import HybridFusion, Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.matcher import RelevanceMatcher  # noqa: E402
from pipeline.eval.metrics import mean  # noqa: E402
from pipeline.models import Mode  # noqa: E402
from pipeline.retrieve.engine import Engine  # noqa: E402
from pipeline.retrieve.fuse import hybrid  # noqa: E402
from pipeline.retrieve.modes import searches_for  # noqa: E402
from pipeline.retrieve.rerank import sigmoid  # noqa: E402

K = 10
CANDIDATES = 15


def windows(text: str, words: int = 160, stride: int = 120) -> list[str]:
    w = text.split()
    if len(w) <= words:
        return [text]
    return [" ".join(w[i : i + words]) for i in range(0, len(w) - words + stride, stride)]


def parent_scores(hits: list[tuple[str, float]], g: float) -> list[tuple[str, float]]:
    by: dict[str, list[float]] = {}
    for pid, s in hits:
        by.setdefault(pid, []).append(s)
    out = {pid: sorted(v, reverse=True)[0] + g * sum(sorted(v, reverse=True)[1:3]) for pid, v in by.items()}
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))


def first_stage(row: dict, g: float, w: float, bm_all: bool) -> list[tuple[str, float]]:
    dense = parent_scores(row["hits"]["children|dense"] + row["hits"].get("parents|dense", []), g)
    sparse = parent_scores(row["hits"].get("parents|bm25", []) + (row["hits"].get("children|bm25", []) if bm_all else []), 0.0)
    return hybrid(dense, sparse, HybridFusion.RELATIVE, w)


def ce_blend(first: list[tuple[str, float]], logits: dict[str, list[float]], n: int, beta: float) -> list[tuple[str, float]]:
    head, tail = first[:n], first[n:]
    lo, hi = min(s for _, s in head), max(s for _, s in head)
    scored = []
    for pos, (pid, s) in enumerate(head):
        base = (s - lo) / (hi - lo) if hi > lo else 1.0
        scored.append((pid, beta * base + (1 - beta) * sigmoid(max(logits.get(pid, [-20.0]))), pos))
    scored.sort(key=lambda t: (-t[1], t[2]))
    return [(pid, s) for pid, s, _ in scored] + tail


def collect(engine: Engine, examples: list) -> list[dict]:
    rows = []
    for i, ex in enumerate(examples):
        r = engine.retriever(Mode.CHUNK, K)
        bundle = QueryBundle(query_str=ex.query, embedding=engine.embedder.get_query_embedding(ex.query))
        hits: dict[str, list[tuple[str, float]]] = {}
        for search in searches_for(Mode.CHUNK):
            if search.collection not in engine.store.indexes:
                continue
            for sparse in (False, True):
                if sparse and search.collection not in engine.store.sparse:
                    continue
                found = r._search(search, bundle, sparse)
                hits[f"{search.collection.value}|{'bm25' if sparse else 'dense'}"] = [(pid, ref.score) for pid, ref, _ in found]
        row = {"hits": hits}
        m = RelevanceMatcher(ex.reference_contexts)
        pids = {pid for v in hits.values() for pid, _ in v}
        row["relevant"] = {pid: m.matches(node.get_content()) for pid in pids if (node := engine.store.parents.get(pid)) is not None}
        row["logits"] = {}
        for pid, _ in first_stage(row, 0.0, 0.7, False)[:CANDIDATES]:
            node = engine.store.parents.get(pid)
            if node is not None:
                row["logits"][pid] = engine.reranker.score(ex.query, windows(node.get_content()))
        rows.append(row)
        if i % 20 == 0:
            print(f"  {i}/{len(examples)}", file=sys.stderr, flush=True)
    return rows


def metrics(rankings: list[list[tuple[str, float]]], rows: list[dict]) -> dict[str, float]:
    hits, rrs = [], []
    for ranking, row in zip(rankings, rows):
        flags = [row["relevant"].get(pid, False) for pid, _ in ranking[:K]]
        hits.append(1.0 if any(flags) else 0.0)
        rrs.append(next((1.0 / (i + 1) for i, f in enumerate(flags) if f), 0.0))
    return {"hit@10": round(mean(hits), 4), "mrr@10": round(mean(rrs), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="DATASET_DIR EVAL_STORE pairs")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results: dict[str, dict] = {}
    for ds_dir, store in zip(args.pairs[::2], args.pairs[1::2]):
        ds = load_dataset(Path(ds_dir))
        started = time.perf_counter()
        with Engine(Settings(store=Path(store)), load_llm=False) as engine:
            rows = collect(engine, ds.examples)
            model = engine.embedder.model_name
        table: dict[str, dict] = {}
        for g in (0.0, 0.05, 0.1, 0.2):
            for w in (0.5, 0.6, 0.7):
                for bm_all in (False, True):
                    name = f"g{g}-w{w}-bmall{int(bm_all)}"
                    firsts = [first_stage(r, g, w, bm_all) for r in rows]
                    table[name] = metrics(firsts, rows)
                    if (g, w) in ((0.0, 0.7), (0.1, 0.7), (0.1, 0.6)):
                        for n in (5, 10, 15):
                            for beta in (0.0, 0.3, 0.5, 0.7):
                                table[f"{name}+ce{n}-b{beta}"] = metrics([ce_blend(f, r["logits"], n, beta) for f, r in zip(firsts, rows)], rows)
        key = f"{ds.name}__{model}"
        results[key] = {"examples": len(rows), "seconds": round(time.perf_counter() - started, 1), "today": table["g0.0-w0.7-bmall0"], "table": table}
        best = max(table.items(), key=lambda kv: kv[1]["mrr@10"])
        print(f"{key}: today {table['g0.0-w0.7-bmall0']}, best {best[0]} {best[1]}", flush=True)
    if args.out:
        merge_results(args.out, results)


if __name__ == "__main__":
    main()
