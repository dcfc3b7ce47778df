"""Explore how parents are scored from their references, offline, on an eval store (not a benchmark).

Fetches each query's references once per reference kind (``depth`` deep), then replays scoring rules
over them and prints MRR@k / hit@k per mode and rule. The rule chosen here is then measured for real
with ``python -m pipeline eval`` (benchmarks/eval_quality.py --tag ...), which is what docs/quality.md
publishes. Writes benchmarks/results/tuning/<dataset>__<llm>.json.

    .venv/bin/python benchmarks/tune_scoring.py ../shared/corpus/llama_datasets/paul_graham_essay
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters  # noqa: E402

from pipeline.config import Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.matcher import RelevanceMatcher, normalise  # noqa: E402
from pipeline.eval.metrics import hit_at_k, mean, reciprocal_rank_at_k  # noqa: E402
from pipeline.eval.run import EvalRunner, describe  # noqa: E402
from pipeline.models import RefKind  # noqa: E402
from pipeline.retrieve.engine import Engine  # noqa: E402
from pipeline.retrieve.modes import MODE_SEARCHES  # noqa: E402
from pipeline.store import layout  # noqa: E402
from pipeline.store.layout import KIND_TO_COLLECTION  # noqa: E402

# The modes exactly as the retriever searches them: kinds per mode, grouped per collection searched.
GROUPS = {mode.value: [list(search.kinds) for search in searches] for mode, searches in MODE_SEARCHES.items()}
MODES = {mode: [k for group in groups for k in group] for mode, groups in GROUPS.items()}


def per_kind_hits(engine: Engine, query: str, depth: int) -> dict[RefKind, list[tuple[str, float]]]:
    emb = engine.embedder.get_query_embedding(query)
    from llama_index.core.schema import QueryBundle

    out = {}
    for kind in RefKind:
        index = engine.store.indexes.get(KIND_TO_COLLECTION[kind])
        if index is None:
            out[kind] = []
            continue
        flt = MetadataFilters(filters=[MetadataFilter(key=layout.KIND, value=[kind.value], operator=FilterOperator.IN)])
        hits = index.as_retriever(similarity_top_k=depth, filters=flt).retrieve(QueryBundle(query_str=query, embedding=emb))
        out[kind] = [(h.node.metadata[layout.PARENT_ID], float(h.score or 0.0)) for h in hits]
    return out


def best_per_parent(hits: list[tuple[str, float]]) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for pid, s in hits:
        best[pid] = max(best.get(pid, -1.0), s)
    return sorted(best.items(), key=lambda kv: -kv[1])


def rule_max(lists: dict[RefKind, list[tuple[str, float]]], kinds, groups) -> dict[str, float]:
    sc: dict[str, float] = {}
    for k in kinds:
        for pid, s in lists[k]:
            sc[pid] = max(sc.get(pid, -1.0), s)
    return sc


def rrf(rankings: list[list[tuple[str, float]]], c: int = 60) -> dict[str, float]:
    sc: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for r, (pid, _) in enumerate(ranking, 1):
            sc[pid] += 1.0 / (c + r)
    return sc


def rule_rrf_collections(lists, kinds, groups, c: int = 60) -> dict[str, float]:
    # What fuse.py does: one ranking per searched collection (best reference per parent).
    rankings = []
    for group in groups:
        merged = [h for k in group if k in kinds for h in lists[k]]
        if merged:
            rankings.append(best_per_parent(merged))
    return rrf(rankings, c)


def rule_rrf_c(c: int):
    def rule(lists, kinds, groups) -> dict[str, float]:
        return rule_rrf_collections(lists, kinds, groups, c)

    return rule


def rule_rrf_kinds(lists, kinds, groups) -> dict[str, float]:
    return rrf([best_per_parent(lists[k]) for k in kinds if lists[k]])


def rule_sum_top(n: int):
    def rule(lists, kinds, groups) -> dict[str, float]:
        per: dict[str, list[float]] = defaultdict(list)
        for k in kinds:
            for pid, s in lists[k]:
                per[pid].append(s)
        return {pid: sum(sorted(v, reverse=True)[:n]) / n for pid, v in per.items()}

    return rule


def rule_max_plus_kinds(w: float):
    # Best reference, plus w × the mean over the other kinds of each kind's best reference.
    def rule(lists, kinds, groups) -> dict[str, float]:
        per_kind = [dict(best_per_parent(lists[k])) for k in kinds if lists[k]]
        pids = {p for d in per_kind for p in d}
        out = {}
        for p in pids:
            vals = sorted((d.get(p, 0.0) for d in per_kind), reverse=True)
            out[p] = vals[0] + (w * mean(vals[1:]) if len(vals) > 1 else 0.0)
        return out

    return rule


def rule_max_kind_weights(w_summary: float, w_question: float):
    # Best reference, summaries and questions scaled separately.
    def rule(lists, kinds, groups) -> dict[str, float]:
        sc: dict[str, float] = {}
        for k in kinds:
            w = w_summary if k is RefKind.SUMMARY else w_question if k is RefKind.QUESTION else 1.0
            for pid, s in lists[k]:
                sc[pid] = max(sc.get(pid, -1.0), w * s)
        return sc

    return rule


def rule_max_weighted(w_meta: float):
    # Best reference, LLM-written kinds (summary, question) scaled by w_meta: they are noisier.
    def rule(lists, kinds, groups) -> dict[str, float]:
        sc: dict[str, float] = {}
        for k in kinds:
            w = w_meta if k in (RefKind.SUMMARY, RefKind.QUESTION) else 1.0
            for pid, s in lists[k]:
                sc[pid] = max(sc.get(pid, -1.0), w * s)
        return sc

    return rule


RULES = {
    "max": rule_max,
    "rrf_collections": rule_rrf_collections,
    "rrf_kinds": rule_rrf_kinds,
    **{f"rrf_collections_k{c}": rule_rrf_c(c) for c in (1, 5, 20)},
    "sum_top2": rule_sum_top(2),
    "sum_top3": rule_sum_top(3),
    "max+0.5kinds": rule_max_plus_kinds(0.5),
    "max+0.2kinds": rule_max_plus_kinds(0.2),
    **{f"max_meta×{w}": rule_max_weighted(w) for w in (0.9, 0.8, 0.7, 0.6)},
    **{f"max_sum×{a}_q×{b}": rule_max_kind_weights(a, b) for a in (1.0, 0.9, 0.8) for b in (0.9, 0.8, 0.7) if a != b},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--store", type=Path, default=ROOT / "storage")
    ap.add_argument("--eval-store", type=Path, help="the dataset's eval store (default: as `eval` names it)")
    ap.add_argument("--depth", type=int, default=100, help="references fetched per kind (= top_k 10 × overfetch 10)")
    args = ap.parse_args()
    settings = Settings(store=args.store)
    ds = load_dataset(args.dataset)
    runner = EvalRunner(settings)
    store = args.eval_store or runner.store_for(ds)
    if not (store / "docstore.sqlite").exists():
        raise SystemExit(f"{store}: not built yet; run eval first")
    engine = Engine(settings.with_overrides(store=store), load_llm=False)
    norms = {pid: normalise(engine.store.parents.get(pid).get_content()) for pid in engine.store.parents.ids()}
    table: dict[str, dict[str, dict[str, float]]] = {}
    per_q = [(RelevanceMatcher(ex.reference_contexts), per_kind_hits(engine, ex.query, args.depth)) for ex in ds.examples]
    for mode, kinds in MODES.items():
        table[mode] = {}
        for name, rule in RULES.items():
            m = defaultdict(list)
            for matcher, lists in per_q:
                ranked = sorted(rule(lists, kinds, GROUPS[mode]).items(), key=lambda kv: (-kv[1], kv[0]))[:10]
                rel = [matcher.matches_normalised(norms.get(pid, "")) for pid, _ in ranked]
                scores = [s for _, s in ranked]
                for k in (2, 10):
                    m[f"hit@{k}"].append(hit_at_k(rel, k, scores))
                    m[f"mrr@{k}"].append(reciprocal_rank_at_k(rel, k, scores))
            table[mode][name] = {key: round(mean(v), 4) for key, v in m.items()}
            print(f"{mode:9s} {name:16s} " + "  ".join(f"{k} {v:.3f}" for k, v in table[mode][name].items()), flush=True)
    engine.close()
    out = ROOT / "benchmarks" / "results" / "tuning"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{ds.name}__{describe(settings)['llm']}.json").write_text(json.dumps({"dataset": ds.name, "store": str(store), "depth": args.depth, "rules": table}, indent=2))


if __name__ == "__main__":
    main()
