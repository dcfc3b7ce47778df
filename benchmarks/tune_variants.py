"""Explore ingest-side choices offline on an eval store, without re-running the LLM (not a benchmark).

Variants, each scored by cosine against the query over one vector (or several) per parent:
- parent_mean: the parent embedded as the length-weighted mean of its 256-token windows (our default)
- parent_first: only its first window (what a truncating embedder does)
- parent_maxwin: every window its own vector, the parent scores its best window
- questions_5: the questions as separate nodes, best one (our default)
- questions_1: all questions of a parent joined into one node
- summary: the summary node alone;  meta_1: summary and questions joined into one node
Writes benchmarks/results/tuning/<dataset>__<llm>__variants.json.

    .venv/bin/python benchmarks/tune_variants.py ../shared/corpus/llama_datasets/paul_graham_essay
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.matcher import RelevanceMatcher, normalise  # noqa: E402
from pipeline.eval.metrics import hit_at_k, mean, reciprocal_rank_at_k  # noqa: E402
from pipeline.eval.run import EvalRunner, describe  # noqa: E402
from pipeline.providers.embeddings import build_embedder  # noqa: E402
from pipeline.store.docstore import ParentStore  # noqa: E402


def ref_texts(store: Path, collection: str) -> dict[str, list[tuple[str, str]]]:
    """parent_id → [(kind, text)] of one collection."""
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(store / "qdrant"))
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    try:
        offset = None
        while True:
            pts, offset = client.scroll(collection, limit=1024, offset=offset, with_payload=True)
            for p in pts:
                node = json.loads(p.payload["_node_content"])
                out[p.payload["parent_id"]].append((p.payload["kind"], node["text"]))
            if offset is None:
                break
    finally:
        client.close()
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.clip(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--store", type=Path, default=ROOT / "storage")
    ap.add_argument("--eval-store", type=Path, help="the dataset's eval store (default: as `eval` names it)")
    args = ap.parse_args()
    settings = Settings(store=args.store)
    ds = load_dataset(args.dataset)
    store = args.eval_store or EvalRunner(settings).store_for(ds)
    emb = build_embedder(settings)
    emb.load()
    ps = ParentStore(store / "docstore.sqlite")
    parents = {pid: ps.get(pid).get_content() for pid in ps.ids()}
    ps.close()
    pids = sorted(parents)
    norms = {pid: normalise(t) for pid, t in parents.items()}
    meta = defaultdict(list)
    for coll in ("docs_summaries", "docs_questions"):
        for pid, items in ref_texts(store, coll).items():
            meta[pid] += items

    # Vectors per variant: a list of (parent_id, vector) rows; a parent may have several.
    variants: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for pid in pids:
        windows = emb._windows(parents[pid])
        pooled = unit(emb._run(windows))
        weights = np.array([len(w) for w in windows], dtype=np.float32)
        variants["parent_mean"].append((pid, unit((pooled * weights[:, None]).sum(0))))
        variants["parent_first"].append((pid, pooled[0]))
        for v in pooled:
            variants["parent_maxwin"].append((pid, v))
        qs = [t for k, t in meta.get(pid, []) if k == "question"]
        sm = [t for k, t in meta.get(pid, []) if k == "summary"]
        texts = {"questions_5": qs, "questions_1": ["\n".join(qs)] if qs else [], "summary": sm, "meta_1": ["\n".join(sm + qs)] if sm or qs else []}
        for name, ts in texts.items():
            for v in (emb.get_text_embedding_batch(ts) if ts else []):
                variants[name].append((pid, np.asarray(v, dtype=np.float32)))
    table = {}
    qv = np.asarray([emb.get_query_embedding(ex.query) for ex in ds.examples], dtype=np.float32)
    matchers = [RelevanceMatcher(ex.reference_contexts) for ex in ds.examples]
    for name, rows in variants.items():
        owners = [pid for pid, _ in rows]
        mat = np.stack([v for _, v in rows])
        sims = qv @ mat.T
        m = defaultdict(list)
        for i, matcher in enumerate(matchers):
            best: dict[str, float] = {}
            for j, pid in enumerate(owners):
                best[pid] = max(best.get(pid, -2.0), float(sims[i, j]))
            ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
            rel = [matcher.matches_normalised(norms[pid]) for pid, _ in ranked]
            for k in (2, 10):
                m[f"hit@{k}"].append(hit_at_k(rel, k, [s for _, s in ranked]))
                m[f"mrr@{k}"].append(reciprocal_rank_at_k(rel, k, [s for _, s in ranked]))
        table[name] = {k: round(mean(v), 4) for k, v in m.items()}
        print(f"{name:14s} " + "  ".join(f"{k} {v:.3f}" for k, v in table[name].items()), flush=True)
    out = ROOT / "benchmarks" / "results" / "tuning"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{ds.name}__{describe(settings)['llm']}__variants.json").write_text(json.dumps({"dataset": ds.name, "store": str(store), "variants": table}, indent=2))


if __name__ == "__main__":
    main()
