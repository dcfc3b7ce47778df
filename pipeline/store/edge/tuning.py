"""What is tuned in the embedded engine, and why: HNSW, quantization, threads, WAL, warm-up, disk guard.

Every value here was chosen by a measurement named beside it (docs/benchmarks.md §7).
"""

from __future__ import annotations


import qdrant_edge as qe


SIDECAR = "collection.json"
LOCK_FILE = ".lock"
DENSE = ""  # qdrant-client's unnamed dense vector is the vector named "" in Qdrant, and in edge too
# HNSW graph of every collection created here. Qdrant's default (m 16, ef_construct 100) found 0.92 of
# the exact top-30 at 20k real MiniLM references and 0.81 at 100k; m 32 / ef_construct 256 with a
# search ef of 512 (``qdrant.hnsw_ef``) found 0.99 at 100k for ~1 ms a search, at 2.3x the build time
# (docs/benchmarks.md §7). Below full_scan_threshold (KB of vectors, ~6.6k of 384 dims) search is exact.
HNSW = {"m": 32, "ef_construct": 256, "full_scan_threshold": 10000}
# Search ef when ``qdrant.hnsw_ef`` is unset ("auto"): it grows with the collection. Measured on the
# children collection against exact top-30 (docs/benchmarks.md §7e): ef 512 found 0.998 at 18k and 0.996
# at 100k, but 0.962 at 283k, where 1536 found 0.996 (p95 8 ms). One ef per 184 points, never below
# 512, reproduces both and stays bounded (4096: ~3x the 300k search time) for larger collections.
EF_MIN, EF_MAX, POINTS_PER_EF = 512, 4096, 184
# Every part of a shard stays on disk, memory-mapped or read as searches touch it (``Cold``), none is
# loaded or pinned in RAM at open: the cost of opening no longer grows with the store. Measured on the
# 283k-point children shard of the 300k bench store (docs/benchmarks.md §7f): the engine's defaults load
# the keyword payload indexes into RAM (most of a 0.8 s load) and pin the BM25 index (78 MB); all cold,
# the shard loads in 0.05 s holding 2 MB of heap (was 165 MB).
COLD = "cold"
# Dense vectors are also kept as int8 (scalar quantization, 4x smaller: 105 MB at 283k points) that HNSW
# walks; the best ``OVERSAMPLING`` x limit candidates are rescored with the original float vectors, so
# scores are exact. At 283k (§7f): recall of the exact top-30 0.996 (as with floats), search p50 6.4 ms
# against 16.9 in a new process, 264 MB of shard files resident after 200 searches instead of 528.
# Oversampling 1 lost recall (0.958 against 0.993 at ef 1,600, a scratch run).
QUANTIZATION = {"scalar": "int8", "quantile": 0.99}
OVERSAMPLING = 2.0
# Threads of a shard's search pool. The engine's default (one per CPU) runs a search's segments in
# parallel and its idle workers spin: on the 41-paper children shard 400 searches cost 0.17-0.19 CPU-s
# against 0.08 with one thread (scratch runs), and a busy service has other requests for the second
# core. One thread: 16-client /retrieve load 112.6 / 118.9 req/s against 96.1 / 114.4 (30-s pairs).
SEARCH_THREADS = 1
# Opening loads nothing, so a new process's first searches would fault the quantized vectors and HNSW
# links in from disk page by page (first 3 searches 1.1 s at 283k: qdrant-edge drops a shard's pages
# from the page cache when it closes it). A background thread reads these files sequentially at open
# instead, while the embedder loads (then 0.02 s, §7f), up to this share of the memory available.
WARM_FILES = ("vector_storage/quantized.*", "vector_index/*", "vector_index-bm25/*")
WARM_MEMORY_SHARE = 0.25
# The engine writes through memory-mapped, sparse-preallocated files: on a full disk a write does not
# fail, the process dies of SIGBUS. So every write first checks that this much space is left, and
# fails with DiskFull (a clear message, the store as it was) instead.
MIN_FREE_BYTES = 16 * 1024 * 1024
# A collection that held no points when its store was last closed (the summaries and questions of a
# store ingested without an LLM, the default) is not loaded at open: its sidecar says so (``EMPTY_MARK``,
# with the payload schema ``get_collection`` reports and the size and mtime of its WAL files, so a
# write by anything else, e.g. an older version of this package, makes the mark void), it answers as
# empty, and its shard is loaded, the mark dropped first and durably, when something writes to it or
# needs the engine. An empty shard cost 15-22 ms and 15-22 MB (its WAL and index pages read in) at
# every open (scratch, 41-paper store).
EMPTY_MARK = "empty_at_close"
# The engine keeps its last closed write-ahead-log segment even when every write in it is in the
# segments, and at every load it maps and decodes each kept segment: with its default capacity (32 MiB)
# that was 78 MB of a 300k store's query process (RSS) and ~16 % of the load's CPU (serde_cbor), at any
# size past 32 MB of writes. The Rust API sets the capacity (``EdgeConfig::wal_options``, "for embedded
# deployments where 32 MiB is too large"); the Python one does not, but the engine reads and keeps it
# from the shard's own ``edge_config.json``, which ``_wal_options`` writes before each load. A write
# larger than the capacity gets a segment of its own size (checked). Segments made before keep theirs
# until the log moves past them.
WAL_OPTIONS = {"segment_capacity": 4 << 20, "segment_queue_len": 0, "retain_closed": 1}
ENGINE_CONFIG = "edge_config.json"

# Keyed by qdrant's names (the values of qdrant-client's enums), so this module needs no qdrant-client.
_DISTANCE = {
    "Cosine": qe.Distance.Cosine,
    "Euclid": qe.Distance.Euclid,
    "Dot": qe.Distance.Dot,
    "Manhattan": qe.Distance.Manhattan,
}
_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
    "text": qe.PayloadSchemaType.Text,
    "uuid": qe.PayloadSchemaType.Uuid,
    "datetime": qe.PayloadSchemaType.Datetime,
}


def auto_ef(points: int) -> int:
    """The search ef for a collection of ``points`` (multiples of 64, EF_MIN..EF_MAX)."""
    return max(EF_MIN, min(EF_MAX, -(-points // (POINTS_PER_EF * 64)) * 64))
