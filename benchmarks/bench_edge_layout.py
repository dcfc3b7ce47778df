"""Benchmark 7f: the on-disk layout of an edge shard: what opening it and its first searches cost.

Why apart from bench_latency.py: the layout is a property of one shard, so one large collection answers
it without the rest of the pipeline (no embedder, no docstore). Each layout is applied to a sparse copy
of the children shard of a bench store (``EdgeShard.load(path, config)`` then ``optimize()``, which
rewrites the segments), and then measured in new processes, as a query process meets it:

- load: ``EdgeShard.load`` alone, and the heap (RssAnon) it leaves, median of 3 processes;
- first searches: the first 3 searches of a new process, without and with the files of
  ``edge.WARM_FILES`` read first (what ``EdgeStore``'s warm-up thread does while the embedder loads);
- p50 / p95 of 200 searches after those, recall of the exact top-30, and the mapped-file RSS they leave.

qdrant-edge drops a shard's pages from the page cache when it closes it, so every process starts cold.

    nice -n 5 .venv/bin/python benchmarks/bench_edge_layout.py --store storage/bench/edge300k
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import PY, ROOT, write_result  # noqa: E402

LAYOUTS = {
    # what create_collection wrote before (engine defaults but vectors and payload cold)
    "before": {},
    "bm25 cold": {"sparse": "cold"},
    "bm25 + keyword indexes cold": {"sparse": "cold", "keywords": "cold"},
    "all cold + int8 (default)": {"sparse": "cold", "keywords": "cold", "int8": "cold"},
    "all cold + int8 in RAM": {"sparse": "cold", "keywords": "cold", "int8": "cached", "hnsw": "cached"},
}

CHILD = r'''
import json, os, sys, time, glob
import numpy as np, qdrant_edge as qe
path, mode, ef = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rss(key):
    status = open("/proc/self/status").read()
    return round(int(status.split(key + ":")[1].split()[0]) / 1024)
vecs = np.load(sys.argv[4])
if mode == "warm":
    for pattern in json.loads(sys.argv[5]):
        for f in glob.glob(os.path.join(path, "segments", "*", pattern)):
            if os.path.isfile(f):
                with open(f, "rb", buffering=0) as fh:
                    while fh.read(1 << 20):
                        pass
anon0 = rss("RssAnon")
t = time.perf_counter(); shard = qe.EdgeShard.load(path); load_s = time.perf_counter() - t
out = {"load_s": load_s, "heap_mb": rss("RssAnon") - anon0}
params = qe.SearchParams(hnsw_ef=ef, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=2.0))
def search(v, p=params):
    return shard.query(qe.QueryRequest(query=qe.Query.Nearest(v.tolist(), using=""), limit=30, params=p, with_payload=True))
first = []
for v in vecs[:3]:
    t = time.perf_counter(); search(v); first.append(time.perf_counter() - t)
out["first3_s"] = first
if mode == "full":
    lat = []
    for v in vecs:
        t = time.perf_counter(); search(v); lat.append((time.perf_counter() - t) * 1000)
    out["p50_ms"], out["p95_ms"] = float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
    out["mapped_mb"] = rss("RssFile")
    exact = qe.SearchParams(exact=True, quantization=qe.QuantizationSearchParams(ignore=True))
    found = total = 0
    for v in vecs:
        floor = search(v, exact)[-1].score - 1e-6
        total += 30
        found += min(30, sum(1 for p in search(v) if p.score >= floor))
    out["recall"] = found / total
print(json.dumps(out))
'''


def apply_layout(shard: Path, opts: dict[str, str]) -> float:
    """Rewrite ``shard`` in a layout; returns the seconds of the rewrite (load with config + optimize)."""
    code = r'''
import sys, json, time, qdrant_edge as qe
from pipeline.store.edge import tuning as edge
path, opts = sys.argv[1], json.loads(sys.argv[2])
M = {"cold": qe.Memory.Cold, "cached": qe.Memory.Cached}
quant = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, memory=M[opts["int8"]]) if "int8" in opts else None
config = qe.EdgeConfig(
    payload_memory=qe.Memory.Cold, id_tracker_memory=qe.Memory.Cold,
    hnsw_config=qe.HnswIndexConfig(**edge.HNSW, memory=M[opts.get("hnsw", "cold")]),
    vectors={"": qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine, memory=qe.Memory.Cold, quantization_config=quant)},
    sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, **({"memory": M[opts["sparse"]]} if "sparse" in opts else {}))},
)
t = time.perf_counter()
shard = qe.EdgeShard.load(path, config)
for key in ("doc_id", "kind", "parent_id"):  # the engine's default keyword index is loaded into RAM
    shard.update(qe.UpdateOperation.delete_field_index(key))
    schema = qe.KeywordIndexParams(memory=M[opts["keywords"]]) if "keywords" in opts else qe.PayloadSchemaType.Keyword
    shard.update(qe.UpdateOperation.create_field_index(key, schema))
shard.optimize(); shard.flush(); shard.close()
print(time.perf_counter() - t)
'''
    out = subprocess.run([PY, "-c", code, str(shard), json.dumps(opts)], capture_output=True, text=True, cwd=ROOT, check=True)
    return float(out.stdout.split()[-1])


def child(shard: Path, mode: str, ef: int, queries: Path) -> dict:
    from pipeline.store.edge.tuning import WARM_FILES

    out = subprocess.run([PY, "-c", CHILD, str(shard), mode, str(ef), str(queries), json.dumps(WARM_FILES)],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="an edge store (e.g. derived by bench_edge_ef.py --derive 300000)")
    ap.add_argument("--collection", default="docs_children")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_edge_layout"))
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    args = ap.parse_args()
    import numpy as np

    from pipeline.config import Settings
    from pipeline.providers.embeddings import build_embedder
    from pipeline.store.edge import auto_ef
    from bench_latency import DATASETS

    texts: list[str] = []
    for name in ("paul_graham_essay", "blockchain_solana", "history_of_alexnet"):
        texts += [e["query"] for e in json.loads((DATASETS / name / "rag_dataset.json").read_text())["examples"]]
    embedder = build_embedder(Settings())
    args.work.mkdir(parents=True, exist_ok=True)
    queries = args.work / "queries.npy"
    np.save(queries, np.asarray([embedder.get_query_embedding(t) for t in texts[:200]], dtype=np.float32))
    source = args.store / "edge" / args.collection
    points, rows = 0, []
    for name in args.layouts.split(","):
        shard = args.work / "shard"
        shutil.rmtree(shard, ignore_errors=True)
        subprocess.run(["cp", "-R", "--sparse=always", str(source), str(shard)], check=True)
        rewrite_s = apply_layout(shard, LAYOUTS[name])
        count = subprocess.run([PY, "-c", "import sys, qdrant_edge as qe; s = qe.EdgeShard.load(sys.argv[1]); print(s.count(qe.CountRequest(exact=True)))", str(shard)],
                               capture_output=True, text=True, check=True).stdout.split()[-1]
        points = int(count)
        ef = auto_ef(points)
        loads = [child(shard, "load", ef, queries) for _ in range(3)]
        warm = [child(shard, "warm", ef, queries) for _ in range(3)]
        full = child(shard, "full", ef, queries)
        row = {
            "layout": name, "options": LAYOUTS[name], "rewrite_s": round(rewrite_s, 1), "ef": ef,
            "load_s": round(statistics.median(r["load_s"] for r in loads), 3),
            "heap_mb": statistics.median(r["heap_mb"] for r in loads),
            "first_search_s": round(statistics.median(r["first3_s"][0] for r in loads), 3),
            "first3_s": round(statistics.median(sum(r["first3_s"]) for r in loads), 3),
            "warm_load_s": round(statistics.median(r["load_s"] for r in warm), 3),
            "warm_first3_s": round(statistics.median(sum(r["first3_s"]) for r in warm), 3),
            "p50_ms": round(full["p50_ms"], 2), "p95_ms": round(full["p95_ms"], 2),
            "mapped_mb": full["mapped_mb"], "recall": round(full["recall"], 4),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(args.work / "shard", ignore_errors=True)
    write_result("edge_layout", {
        "command": f"benchmarks/bench_edge_layout.py --store {args.store} --collection {args.collection}",
        "how": f"the {args.collection} shard of {args.store.name} ({points:,} points) rewritten in each layout, then "
               "measured in new processes (load and first searches: median of 3)",
        "points": points,
        "layouts": rows,
    })


if __name__ == "__main__":
    main()
