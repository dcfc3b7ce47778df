"""Tune the retrieval stages on built eval stores: hybrid fusion method and weight, rerank depth and input.

Why a script apart from ``eval``: ``eval`` measures one configuration per run; choosing defaults
means comparing dozens. This script searches each query's references once (dense and BM25, per
collection, as ``ParentRetriever`` does), caches the cross-encoder scores of each candidate's best
reference texts, then scores every combination offline with the same metrics as ``eval``. The
chosen defaults are then confirmed with ``python -m pipeline eval`` (results/quality/).

    PIPELINE_LLM__PROVIDER=none python benchmarks/tune_hybrid.py DATASET_DIR EVAL_STORE [...] --out benchmarks/results/tuning/hybrid.json
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

from pipeline.config import Fusion, HybridFusion, Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.matcher import RelevanceMatcher, normalise  # noqa: E402
from pipeline.eval.metrics import hit_at_k, mean, reciprocal_rank_at_k  # noqa: E402
from pipeline.models import Mode  # noqa: E402
from pipeline.retrieve.engine import Engine  # noqa: E402
from pipeline.retrieve.fuse import fuse, hybrid, rank_parents  # noqa: E402
from pipeline.retrieve.modes import searches_for  # noqa: E402
from pipeline.retrieve.rerank import blend  # noqa: E402

K = 10


def collect(engine: Engine, queries: list[str], mode: Mode, rerank_n: int, passages: int) -> list[dict]:
    """Per query: dense and sparse parent rankings, and cross-encoder logits of the top candidates."""
    out = []
    for i, q in enumerate(queries):
        r = engine.retriever(mode, K)
        bundle = QueryBundle(query_str=q, embedding=engine.embedder.get_query_embedding(q))
        dense, sparse, texts = [], [], {}
        for search in searches_for(mode):
            if search.collection not in engine.store.indexes:
                continue
            for is_sparse in (False, True):
                if is_sparse and search.collection not in engine.store.sparse:
                    continue
                hits = r._search(search, bundle, is_sparse)
                for rank, (pid, _, text) in enumerate(hits):
                    texts.setdefault(pid, []).append((rank, text))
                (sparse if is_sparse else dense).append(rank_parents([(p, ref) for p, ref, _ in hits], r.weights))
        d = fuse(dense, Fusion.MAX)
        s = fuse(sparse, Fusion.MAX)
        cands = ({pid for pid, _ in hybrid(d, s, HybridFusion.RELATIVE, 0.5)[:rerank_n]} | {pid for pid, _ in d[:rerank_n]}) if rerank_n else set()
        logits: dict[str, list[float]] = {}
        for pid in cands:
            seen: list[str] = []
            for _, text in sorted(texts.get(pid, []), key=lambda rt: rt[0]):
                if text not in seen:
                    seen.append(text)
            logits[pid] = engine.reranker.score(q, seen[:passages]) if seen else [-20.0]
        out.append({"dense": d, "sparse": s, "logits": logits})
        if i % 20 == 0:
            print(f"  {i}/{len(queries)}", file=sys.stderr, flush=True)
    return out


def pooled(dense: list, sparse: list, method: HybridFusion, w: float) -> list[tuple[str, float]]:
    pool = {pid for pid, _ in dense}
    fused = hybrid(dense, [(p, sc) for p, sc in sparse if p in pool], method, w)
    low = min((sc for _, sc in fused), default=0.0)
    return fused + [(p, low - 1 - i) for i, (p, _) in enumerate(x for x in sparse if x[0] not in pool)]


def metrics(rankings: list[list[tuple[str, float]]], relevant: list[dict[str, bool]]) -> dict[str, float]:
    hits, rrs, hits2, rrs2 = [], [], [], []
    for ranking, rel in zip(rankings, relevant):
        flags = [rel.get(pid, False) for pid, _ in ranking[:K]]
        scores = [sc for _, sc in ranking[:K]]
        hits.append(hit_at_k(flags, K, scores))
        rrs.append(reciprocal_rank_at_k(flags, K, scores))
        hits2.append(hit_at_k(flags[:2], 2, scores[:2]))
        rrs2.append(reciprocal_rank_at_k(flags[:2], 2, scores[:2]))
    return {"hit@2": round(mean(hits2), 4), "mrr@2": round(mean(rrs2), 4), "hit@10": round(mean(hits), 4), "mrr@10": round(mean(rrs), 4)}


def reranked(first: list[tuple[str, float]], logits: dict[str, list[float]], n: int, m: int, beta: float) -> list[tuple[str, float]]:
    """``rerank.blend`` over cached logits: the best of the first m passages of each candidate."""
    return blend(first, {pid: max(v[:m]) for pid, v in logits.items()}, n, beta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="DATASET_DIR EVAL_STORE pairs")
    ap.add_argument("--mode", default="chunk")
    ap.add_argument("--rerank-n", type=int, default=20)
    ap.add_argument("--passages", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results: dict[str, dict] = {}
    for ds_dir, store in zip(args.pairs[::2], args.pairs[1::2]):
        ds = load_dataset(Path(ds_dir))
        settings = Settings(store=Path(store))
        started = time.perf_counter()
        with Engine(settings, load_llm=False) as engine:
            data = collect(engine, [ex.query for ex in ds.examples], Mode(args.mode), args.rerank_n, args.passages)
            relevant = []
            for ex, row in zip(ds.examples, data):
                m = RelevanceMatcher(ex.reference_contexts)
                pids = {p for p, _ in row["dense"]} | {p for p, _ in row["sparse"]}
                rel = {}
                for pid in pids:
                    node = engine.store.parents.get(pid)
                    rel[pid] = bool(node is not None and m.matches_normalised(normalise(node.get_content())))
                relevant.append(rel)
            model = engine.embedder.model_name
        table: dict[str, dict] = {}
        table["dense"] = metrics([r["dense"] for r in data], relevant)
        table["bm25"] = metrics([r["sparse"] for r in data], relevant)
        firsts = {"dense": [r["dense"] for r in data]}
        for method in HybridFusion:
            weights = [0.5] if method is HybridFusion.RRF else [0.3, 0.4, 0.5, 0.6, 0.7]
            for w in weights:
                name = f"hybrid-{method.value}" + ("" if method is HybridFusion.RRF else f"-{w}")
                firsts[name] = [hybrid(r["dense"], r["sparse"], method, w) for r in data]
                table[name] = metrics(firsts[name], relevant)
                # BM25 re-weighs the dense candidates only; parents only BM25 found come after them.
                pname = f"pooled-{method.value}" + ("" if method is HybridFusion.RRF else f"-{w}")
                firsts[pname] = [pooled(r["dense"], r["sparse"], method, w) for r in data]
                table[pname] = metrics(firsts[pname], relevant)
        if not args.rerank_n:
            firsts = {}
        for first_name in [n for n in ("dense", "hybrid-relative-0.5", "hybrid-relative-0.4", "hybrid-relative-0.6") if n in firsts]:
            for n in (5, 10, 20):
                if n > args.rerank_n:
                    continue
                for m in range(1, args.passages + 1):
                    for beta in (0.0, 0.2, 0.3, 0.5):
                        name = f"{first_name}+rerank-n{n}-p{m}-b{beta}"
                        ranks = [reranked(f, r["logits"], n, m, beta) for f, r in zip(firsts[first_name], data)]
                        table[name] = metrics(ranks, relevant)
        key = f"{ds.name}__{model}"
        results[key] = {"examples": len(ds.examples), "mode": args.mode, "seconds": round(time.perf_counter() - started, 1), "table": table}
        best = sorted(table.items(), key=lambda kv: -kv[1]["mrr@10"])[:8]
        print(f"{key}: dense {table['dense']} bm25 {table['bm25']}")
        for name, row in best:
            print(f"   {name:45s} {row}")
    if args.out:
        merge_results(args.out, results)


if __name__ == "__main__":
    main()
