"""Where should hybrid search run BM25: every collection of the mode, the children only, or the parents only?

Why: embedded (local-mode) Qdrant scores sparse vectors point by point in Python, and the children
collection holds ~17 points per parent; if BM25 over the parents' self-references ranks as well, hybrid
costs a fraction. Replays mode chunk on built eval stores (dense per collection, BM25 per collection),
fuses with relative score fusion at dense weights 0.6 and 0.7, and prints hit@10 / MRR@10 per scope;
``--out`` keeps them (benchmarks/results/tuning/bm25_scope.json, rendered into docs/quality.md).

    PIPELINE_LLM__PROVIDER=none python benchmarks/tune_bm25_scope.py DATASET_DIR EVAL_STORE [...] --out FILE
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tune_hybrid import metrics  # noqa: E402
from llama_index.core.schema import QueryBundle  # noqa: E402

from pipeline.config import Fusion, HybridFusion, Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.matcher import RelevanceMatcher, normalise  # noqa: E402
from pipeline.models import Mode  # noqa: E402
from pipeline.retrieve.engine import Engine  # noqa: E402
from pipeline.retrieve.fuse import fuse, hybrid, rank_parents  # noqa: E402
from pipeline.retrieve.modes import searches_for  # noqa: E402
from pipeline.store.layout import Collection  # noqa: E402

args = sys.argv[1:]
out_file = None
if "--out" in args:
    i = args.index("--out")
    out_file = Path(args[i + 1])
    args = args[:i] + args[i + 2:]
pairs = args
results = {}
for ds_dir, store in zip(pairs[::2], pairs[1::2]):
    ds = load_dataset(Path(ds_dir))
    with Engine(Settings(store=Path(store)), load_llm=False) as e:
        rows = []; rel = []
        for ex in ds.examples:
            r = e.retriever(Mode.CHUNK, 10)
            b = QueryBundle(query_str=ex.query, embedding=e.embedder.get_query_embedding(ex.query))
            dense, sp = [], {}
            for s in searches_for(Mode.CHUNK):
                h = r._search(s, b, False); dense.append(rank_parents([(p, x) for p, x, _ in h], None))
                h = r._search(s, b, True); sp[s.collection] = rank_parents([(p, x) for p, x, _ in h], None)
            d = fuse(dense, Fusion.MAX)
            m = RelevanceMatcher(ex.reference_contexts)
            pids = {p for p, _ in d} | {p for v in sp.values() for p, _ in v}
            rel.append({p: bool((n := e.store.parents.get(p)) and m.matches_normalised(normalise(n.get_content()))) for p in pids})
            rows.append((d, sp))
        out = {}
        for w in (0.6, 0.7):
            out[f'all-{w}'] = metrics([hybrid(d, fuse(list(sp.values()), Fusion.MAX), HybridFusion.RELATIVE, w) for d, sp in rows], rel)
            out[f'parents-{w}'] = metrics([hybrid(d, sp[Collection.PARENTS], HybridFusion.RELATIVE, w) for d, sp in rows], rel)
            out[f'children-{w}'] = metrics([hybrid(d, sp[Collection.CHILDREN], HybridFusion.RELATIVE, w) for d, sp in rows], rel)
        results[f"{ds.name}__{e.embedder.model_name}"] = out
        print(ds.name, json.dumps({k: (v['hit@10'], v['mrr@10']) for k, v in out.items()}))
if out_file:
    out_file.write_text(json.dumps(results, indent=1) + "\n")
