"""Quick numbers for the edge backend alone (not a benchmark suite): bulk upsert rate through
``QdrantClient.upsert`` and the open time of the resulting store in a new process.

    .venv/bin/python scripts/measure_edge.py --points 20000 --dim 384 --folder /tmp/edge-measure

Points carry a random unit dense vector, a 12-term BM25-like sparse vector and a ~1 KB payload
(doc_id, kind, parent_id, text), upserted in batches of 256 as ``QdrantVectorStore`` sends them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from qdrant_client import models

from pipeline.store.edge import EdgeClient

OPEN = """
import sys, time, json
t0 = time.perf_counter()
from pathlib import Path
from pipeline.store.edge import EdgeClient
t1 = time.perf_counter()
c = EdgeClient(Path(sys.argv[1]))
t2 = time.perf_counter()
hits = c.query_points("bench", query=[0.1] * int(sys.argv[2]), limit=10).points
t3 = time.perf_counter()
print(json.dumps({"import_s": round(t1 - t0, 3), "open_s": round(t2 - t1, 3), "first_query_s": round(t3 - t2, 4), "hits": len(hits)}))
c.close()
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/edge-measure"))
    args = ap.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.points, args.dim)).astype(np.float32)
    text = "lorem ipsum dolor sit amet " * 36  # ~1 KB
    client = EdgeClient(args.folder, keyword_indexes=("doc_id", "kind", "parent_id"))
    client.create_collection(
        "bench",
        vectors_config=models.VectorParams(size=args.dim, distance=models.Distance.COSINE),
        sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    started = time.perf_counter()
    for start in range(0, args.points, args.batch):
        points = [
            models.PointStruct(
                id=str(uuid.uuid4()),
                vector={"": vectors[i].tolist(), "bm25": models.SparseVector(indices=sorted(rng.choice(30_000, 12, replace=False).tolist()), values=[1.0] * 12)},
                payload={"doc_id": f"/docs/{i // 400}.pdf", "kind": "chunk-256", "parent_id": str(uuid.uuid4()), "text": text},
            )
            for i in range(start, min(start + args.batch, args.points))
        ]
        client.upsert("bench", points=points, wait=True)
    upserted = time.perf_counter() - started
    client.flush()
    flushed = time.perf_counter() - started
    client.optimize()
    optimized = time.perf_counter() - started
    client.close()
    opened = json.loads(subprocess.run([sys.executable, "-c", OPEN, str(args.folder), str(args.dim)], capture_output=True, text=True, check=True).stdout)
    print(json.dumps({
        "points": args.points,
        "upsert_s": round(upserted, 2),
        "upsert_points_per_s": round(args.points / upserted),
        "with_flush_points_per_s": round(args.points / flushed),
        "optimize_s": round(optimized - flushed, 2),
        "new_process": opened,
    }, indent=1))


if __name__ == "__main__":
    main()
