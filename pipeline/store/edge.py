"""Embedded Qdrant engine (qdrant-edge) behind qdrant-client's API: the store's default backend.

``EdgeClient`` is a real ``qdrant_client.QdrantClient`` whose inner ``_client`` is ``EdgeStore``, an
implementation of qdrant-client's ``QdrantBase`` over ``qdrant_edge.EdgeShard`` (as
``qdrant_client.local.QdrantLocal`` implements it over numpy). So LlamaIndex's ``QdrantVectorStore``,
``pipeline/store/qdrant.py``, ``migrate``, ``check``, ``status``, ingest and retrieval all run
unchanged on it; only ``open_client`` chooses. This is the only module that imports ``qdrant_edge``
(a beta library whose API changed between 0.5, 0.7 and 0.9: pinned exactly in pyproject.toml).

Layout under ``<store>/edge/``::

    .lock                   held (flock) by the process that has the store open
    <collection>/           one EdgeShard per collection (segments/, wal/, edge_config.json)
    <collection>/collection.json   our sidecar: vector config and collection metadata
                                   (qdrant-edge keeps no collection metadata of its own)

A collection is built in ``.<collection>.creating-<pid>`` (shard, payload indexes, sidecar) and
renamed into place, so a crash while creating leaves only a temp folder, removed on the next open;
a collection folder without its sidecar is reported as damaged, never guessed at.

Only what this package and LlamaIndex's ``QdrantVectorStore`` call is implemented; every other
``QdrantBase`` method raises ``NotImplementedError`` naming itself.

Example::

    client = EdgeClient(Path("store/edge"))
    client.create_collection("docs_children", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    client.upsert("docs_children", points=[models.PointStruct(id=str(uuid4()), vector=[...], payload={})])
    hits = client.query_points("docs_children", query=[...], limit=5).points
    client.close()  # flushes
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import QdrantClient, models
from qdrant_client.client_base import QdrantBase
from qdrant_client.http import models as rest

from pipeline.errors import StoreDamaged, StoreLocked, StoreUnavailable

logger = logging.getLogger(__name__)

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
LOCKED_HINT = (
    "Stop it, send the job to the service (POST /ingest), or use a Qdrant server (QDRANT_URL)."
)

_DISTANCE = {
    models.Distance.COSINE: qe.Distance.Cosine,
    models.Distance.EUCLID: qe.Distance.Euclid,
    models.Distance.DOT: qe.Distance.Dot,
    models.Distance.MANHATTAN: qe.Distance.Manhattan,
}
_SCHEMA = {
    models.PayloadSchemaType.KEYWORD: qe.PayloadSchemaType.Keyword,
    models.PayloadSchemaType.INTEGER: qe.PayloadSchemaType.Integer,
    models.PayloadSchemaType.FLOAT: qe.PayloadSchemaType.Float,
    models.PayloadSchemaType.BOOL: qe.PayloadSchemaType.Bool,
    models.PayloadSchemaType.TEXT: qe.PayloadSchemaType.Text,
    models.PayloadSchemaType.UUID: qe.PayloadSchemaType.Uuid,
    models.PayloadSchemaType.DATETIME: qe.PayloadSchemaType.Datetime,
}


def auto_ef(points: int) -> int:
    """The search ef for a collection of ``points`` (multiples of 64, EF_MIN..EF_MAX)."""
    return max(EF_MIN, min(EF_MAX, -(-points // (POINTS_PER_EF * 64)) * 64))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic and durable: a reader (or a crash, or a power cut once this returns) sees the old file or
    the new one, never half of one; the folder is synced so the rename itself is on disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _blocks_bytes(folder: Path) -> int:
    """Bytes a folder really uses on disk (its files are sparse: sizes would overstate it ~100x)."""
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())


def _ensure_space(path: Path, needed: int = 0) -> None:
    """Raise DiskFull unless ``needed`` bytes plus ``MIN_FREE_BYTES`` are free where ``path`` lives."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < needed + MIN_FREE_BYTES:
        from pipeline.errors import DiskFull

        raise DiskFull(
            path,
            f"{free // 1024} KB free, the embedded engine needs {(needed + MIN_FREE_BYTES) // (1024 * 1024)} MB to write safely "
            "(it writes through memory-mapped files, which a full disk would crash)",
        )


def _read_into_cache(path: Path, size: int, stop: threading.Event, chunk: int = 64 << 20) -> None:
    """Read ``path`` into the page cache without copying it to Python: ``sendfile`` to /dev/null, in
    chunks so ``stop`` is seen. Not ``read()`` in a loop: each 1 MB read waited to take the GIL back from
    the embedder loading meanwhile (114 MB took 0.7 s; 219 MB take 0.08 s this way). Not one
    ``posix_fadvise(WILLNEED)``: it reads one readahead window (8 MB here), and the searches it is for
    start at once (``_keep_cached`` uses it at close, where nothing waits)."""
    with open(path, "rb") as src, open(os.devnull, "wb") as sink:
        offset = 0
        while offset < size and not stop.is_set():
            sent = os.sendfile(sink.fileno(), src.fileno(), offset, min(chunk, size - offset))
            if sent <= 0:
                return
            offset += sent


def _warm_files(folder: Path) -> list[Path]:
    """The files of a shard that its first searches read (``WARM_FILES``)."""
    return [f for pattern in WARM_FILES for f in folder.glob(f"segments/*/{pattern}") if f.is_file()]


def _cached_ranges(folder: Path, gap: int = 32) -> list[tuple[Path, list[tuple[int, int]]]]:
    """(file, [(offset, length)]) of every file under ``folder`` that has pages in the page cache now.

    ``mincore`` on a private, unread mapping of each file: it reports the page cache, reads nothing.
    Runs of cached pages less than ``gap`` pages apart are merged (fewer calls to re-read them). Best
    effort: on any error, what was found so far."""
    out: list[tuple[Path, list[tuple[int, int]]]] = []
    try:
        _find_cached(folder, gap, out)
    except Exception as exc:  # noqa: BLE001 - closing must go on
        logger.debug("edge: page cache not read for %s: %s", folder, exc)
    return out


def _find_cached(folder: Path, gap: int, out: list[tuple[Path, list[tuple[int, int]]]]) -> None:
    import ctypes
    import mmap

    import numpy as np

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = f.stat().st_size
        if not size:
            continue
        with open(f, "rb") as fh:
            mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)
        try:
            view = (ctypes.c_char * size).from_buffer(mapped)
            pages = (size + page - 1) // page
            vec = (ctypes.c_ubyte * pages)()
            failed = libc.mincore(ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(size), vec)
            del view
        finally:
            mapped.close()
        if failed:
            raise OSError(ctypes.get_errno(), f"mincore {f}")
        cached = np.frombuffer(vec, dtype=np.uint8) & 1
        if not cached.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate(([0], cached, [0])).astype(np.int8)))
        starts, stops = edges[0::2], edges[1::2]
        keep = np.concatenate(([True], starts[1:] - stops[:-1] >= gap))
        runs = zip(starts[keep], np.append(stops[np.flatnonzero(keep)[1:] - 1], stops[-1]))
        out.append((f, [(int(a) * page, (int(b) - int(a)) * page) for a, b in runs]))


def _to_recache(folder: Path) -> list[tuple[Path, list[tuple[int, int]]]]:
    """What to read back after closing the shard at ``folder``: what is cached now (``_cached_ranges``)
    and the whole of what the warm-up reads (``WARM_FILES``), which an optimize leaves uncached."""
    try:
        warm = {f: [(0, f.stat().st_size)] for f in _warm_files(folder)}
    except OSError:  # a file gone meanwhile: only what is cached
        warm = {}
    return [*((f, runs) for f, runs in _cached_ranges(folder) if f not in warm), *warm.items()]


def _keep_cached(ranges: Sequence[tuple[Path, list[tuple[int, int]]]], chunk: int = 8 << 20) -> None:
    """Ask the kernel to read ``ranges`` (``_to_recache`` before the close) back into the page cache.

    Closing a shard makes qdrant-edge drop its files from the page cache (``fincore``: 0 pages after
    ``close()``), so the next process to open the store (a restarted service, the next CLI query)
    would read from disk, page by page during its first searches, what this one had in memory. Right
    after the engine closes a shard this re-reads what was cached before, up to the warm-up's budget:
    ``posix_fadvise(WILLNEED)`` returns at once and the kernel reads meanwhile (110 MB queued in 24 ms
    here); one call reads at most the device's readahead window, hence the chunks. Best effort: a
    failed advice costs only speed."""
    try:
        budget = _available_memory() * WARM_MEMORY_SHARE
        # Smallest first, as the warm-up: what loading reads (id trackers, keyword indexes, the log) and
        # the HNSW links are back before the bulk (float vectors an exact search swept in, say).
        for f, runs in sorted(ranges, key=lambda fr: sum(length for _, length in fr[1])):
            fd = os.open(f, os.O_RDONLY)
            try:
                for offset, length in runs:
                    budget -= length
                    if budget < 0:
                        return
                    for start in range(offset, offset + length, chunk):
                        os.posix_fadvise(fd, start, min(chunk, offset + length - start), os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)
    except Exception as exc:  # noqa: BLE001 - also at interpreter exit, when open() may be gone
        logger.debug("edge: pages not re-read after close: %s", exc)


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where there is none: then nothing is warmed)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _engine_error(exc: Exception, path: Path) -> Exception:
    """Our error for an exception raised by qdrant-edge (it raises plain ``Exception``)."""
    text = str(exc)
    if "WouldBlock" in text:
        return StoreLocked(f"embedded Qdrant (edge) at {path} is open in another process (a running `pipeline serve`?). {LOCKED_HINT}")
    if "No space" in text or "os error 28" in text:
        from pipeline.errors import DiskFull

        return DiskFull(path, f"qdrant-edge: {text}")
    if any(s in text.lower() for s in DAMAGE_SIGNS):  # a file the engine cannot read: retrying cannot help
        return StoreDamaged(path, f"qdrant-edge: {text}", "run `python -m pipeline check --repair`: it rebuilds the collection from the docstore and the ingest cache")
    return StoreUnavailable(f"embedded Qdrant (edge) at {path}: {text}")


# Engine errors that mean a collection's files are damaged (truncated pages, garbage JSON), seen with
# qdrant-edge 0.9.0 on files cut or overwritten by hand (tests/e2e/test_damage.py).
DAMAGE_SIGNS = ("io error", "out of bounds", "deserialize", "corrupt", "checksum", "failed to load segment", "failed to read")


# --- qdrant-client models → qdrant_edge -------------------------------------------------------------


def _point_id(pid: Any) -> Any:
    return str(pid) if isinstance(pid, uuid.UUID) else pid


def _out_id(pid: Any) -> Any:
    return str(pid) if isinstance(pid, uuid.UUID) else pid


def _sparse(vec: models.SparseVector) -> qe.SparseVector:
    return qe.SparseVector(list(vec.indices), [float(v) for v in vec.values])


def _named_vector(vec: Any) -> Any:
    if isinstance(vec, models.SparseVector):
        return _sparse(vec)
    if hasattr(vec, "tolist"):
        return vec.tolist()
    if isinstance(vec, (list, tuple)):
        # The engine reads any real number itself (ints, numpy scalars) and refuses anything else; a
        # Python pass converting 384 floats cost ~25 µs a point, 13 % of a bulk upsert.
        if vec and isinstance(vec[0], (list, tuple)):
            return [list(v) for v in vec]
        return vec if isinstance(vec, list) else list(vec)
    raise NotImplementedError(f"qdrant-edge backend: vector of type {type(vec).__name__} (inference objects are not supported)")


def _vectors(vector: Any) -> dict[str, Any]:
    """A point's vectors as edge wants them: always a dict, the unnamed dense one under ``DENSE``."""
    if vector is None:
        return {}
    if isinstance(vector, Mapping):
        return {name: _named_vector(v) for name, v in vector.items()}
    return {DENSE: _named_vector(vector)}


def _match(match: Any) -> Any:
    if isinstance(match, models.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(list(match.any))
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(list(match.except_))
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, models.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    raise NotImplementedError(f"qdrant-edge backend: match {type(match).__name__}")


def _condition(cond: Any) -> Any:
    if isinstance(cond, models.Filter):
        return _filter(cond)
    if isinstance(cond, models.FieldCondition):
        rng = None
        if cond.range is not None:
            if not isinstance(cond.range, models.Range):
                raise NotImplementedError(f"qdrant-edge backend: range {type(cond.range).__name__}")
            rng = qe.RangeFloat(gte=cond.range.gte, gt=cond.range.gt, lte=cond.range.lte, lt=cond.range.lt)
        if cond.geo_bounding_box or cond.geo_radius or cond.geo_polygon or cond.values_count:
            raise NotImplementedError("qdrant-edge backend: geo and values_count conditions")
        return qe.FieldCondition(
            cond.key,
            match=_match(cond.match) if cond.match is not None else None,
            range=rng,
            is_empty=cond.is_empty,
            is_null=cond.is_null,
        )
    if isinstance(cond, models.HasIdCondition):
        return qe.HasIdCondition({_point_id(i) for i in cond.has_id})
    if isinstance(cond, models.HasVectorCondition):
        return qe.HasVectorCondition(cond.has_vector)
    if isinstance(cond, models.IsEmptyCondition):
        return qe.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, models.IsNullCondition):
        return qe.IsNullCondition(cond.is_null.key)
    if isinstance(cond, models.NestedCondition):
        return qe.NestedCondition(cond.nested.key, _filter(cond.nested.filter))
    raise NotImplementedError(f"qdrant-edge backend: condition {type(cond).__name__}")


def _conditions(part: Any) -> list[Any] | None:
    if part is None:
        return None
    items = part if isinstance(part, list) else [part]
    return [_condition(c) for c in items] or None


def _filter(flt: models.Filter | None) -> qe.Filter | None:
    if flt is None:
        return None
    min_should = None
    if flt.min_should is not None:
        min_should = qe.MinShould([_condition(c) for c in flt.min_should.conditions], flt.min_should.min_count)
    return qe.Filter(
        must=_conditions(flt.must), should=_conditions(flt.should), must_not=_conditions(flt.must_not), min_should=min_should
    )


def _with_payload(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, models.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(value.include))
    if isinstance(value, models.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(value.exclude))
    return list(value)


def _with_vectors(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return bool(value)
    return [DENSE if name is None else name for name in value]


def _search_params(params: models.SearchParams | None, hnsw_ef: int | None = None) -> qe.SearchParams:
    """The request's params; ``hnsw_ef`` (the store's default) fills in an ef the request leaves unset.

    Quantized vectors are rescored with ``OVERSAMPLING`` unless the request says otherwise; an exact
    search ignores them (exact means exact scores). Both are no-ops on a collection without quantization.
    """
    params = params or models.SearchParams()
    ef = params.hnsw_ef if params.hnsw_ef is not None else hnsw_ef
    q = params.quantization
    if q is not None:
        quant = qe.QuantizationSearchParams(ignore=bool(q.ignore), rescore=q.rescore, oversampling=q.oversampling)
    elif params.exact:
        quant = qe.QuantizationSearchParams(ignore=True)
    else:
        quant = qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
    return qe.SearchParams(hnsw_ef=ef, exact=bool(params.exact), indexed_only=bool(params.indexed_only), quantization=quant)


def _query(query: Any, using: str | None) -> Any:
    """A resolved qdrant-client query (or a raw vector, as prefetches may carry) → edge's."""
    if query is None:
        return None
    if isinstance(query, models.NearestQuery):
        if query.mmr is not None:
            raise NotImplementedError("qdrant-edge backend: query_points with MMR")
        query = query.nearest
    if isinstance(query, models.FusionQuery):
        return qe.Fusion.Rrf(k=60) if query.fusion == models.Fusion.RRF else qe.Fusion.Dbsf()
    if isinstance(query, models.RrfQuery):
        return qe.Fusion.Rrf(k=query.rrf.k if query.rrf.k is not None else 60, weights=query.rrf.weights)
    if isinstance(query, (list, models.SparseVector)) or hasattr(query, "tolist"):
        return qe.Query.Nearest(_named_vector(query), using=using if using is not None else DENSE)
    raise NotImplementedError(f"qdrant-edge backend: query of type {type(query).__name__}")


def _prefetch(pre: models.Prefetch, hnsw_ef: int | None = None) -> qe.Prefetch:
    nested = pre.prefetch if isinstance(pre.prefetch, list) else ([pre.prefetch] if pre.prefetch else [])
    return qe.Prefetch(
        limit=pre.limit if pre.limit is not None else 10,
        query=_query(pre.query, pre.using),
        prefetches=[_prefetch(p, hnsw_ef) for p in nested] or None,
        params=_search_params(pre.params, hnsw_ef),
        filter=_filter(pre.filter),
        score_threshold=pre.score_threshold,
    )


def _shard_config(
    dense: Mapping[str, models.VectorParams],
    sparse: Mapping[str, models.SparseVectorParams | None],
    hnsw: Mapping[str, int] = HNSW,
    quantile: float = QUANTIZATION["quantile"],
) -> qe.EdgeConfig:
    """A shard of the current layout: HNSW as ``hnsw``, int8-quantized dense vectors, every part ``Cold``,
    ``SEARCH_THREADS`` search threads (see the constants). A shard loaded with it keeps its data (the
    engine checks the vectors match) and its config file is rewritten with it."""
    cold = qe.Memory.Cold
    quant = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=quantile, memory=cold)
    return qe.EdgeConfig(
        hnsw_config=qe.HnswIndexConfig(**hnsw, memory=cold),
        payload_memory=cold,
        id_tracker_memory=cold,
        max_search_threads=SEARCH_THREADS,
        vectors={
            name: qe.EdgeVectorParams(size=p.size, distance=_DISTANCE[p.distance], memory=cold, quantization_config=quant)
            for name, p in dense.items()
        },
        sparse_vectors={
            name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if p and p.modifier == models.Modifier.IDF else None, memory=cold)
            for name, p in sparse.items()
        },
    )


def _open_config(coll: _Collection) -> qe.EdgeConfig | None:
    """The config a collection of the current layout is loaded with: the one it was created with (as its
    sidecar records it), so a shard written before ``SEARCH_THREADS`` gets it too. None (the shard's own
    config) for a collection of the older layout, which only ``upgrade`` rewrites (a changed layout
    rebuilds the segments), and for a sidecar that does not say enough to rebuild the config."""
    meta = coll.meta
    if "quantization" not in meta:
        return None
    try:
        quantile = meta["quantization"].get("quantile", QUANTIZATION["quantile"])
        return _shard_config(coll.dense_params(), coll.sparse_params() or {}, meta.get("hnsw", HNSW), quantile)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _schema_name(index: Any) -> str:
    """A payload index's data type as qdrant-client names it ("keyword"), from the engine's enum."""
    return str(index.data_type).rsplit(".", 1)[-1].lower()


def _wal_fingerprint(folder: Path) -> list[list[Any]]:
    """(name, size, mtime in ns) of each write-ahead log file: any write to the shard changes one."""
    wal = folder / "wal"
    try:
        return sorted([f.name, st.st_size, st.st_mtime_ns] for f in wal.iterdir() if f.is_file() for st in [f.stat()])
    except OSError:
        return []


def _wal_options(folder: Path) -> None:
    """Give the shard at ``folder`` (not loaded) ``WAL_OPTIONS`` through its persisted engine config.
    A config that cannot be read is left for the engine to report when it loads the shard."""
    path = folder / ENGINE_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(config, dict) and config.get("wal_options") != WAL_OPTIONS:
        _write_json(path, {**config, "wal_options": WAL_OPTIONS})


def _load_shard(coll: _Collection) -> Any:
    """Load the collection's shard with ``_open_config`` (and ``WAL_OPTIONS``); with its own config if
    the sidecar disagrees."""
    config = _open_config(coll)
    try:
        _wal_options(coll.path)
        try:
            return qe.EdgeShard.load(str(coll.path), config)
        except Exception as exc:
            if config is None:
                raise
            # The sidecar disagrees with the shard (a run stopped between the two writes): the
            # shard's own config is the truth, and it answers as it did before SEARCH_THREADS.
            logger.warning("%s: not loaded with the config its sidecar records (%s); loaded as it is", coll.path, exc)
            return qe.EdgeShard.load(str(coll.path))
    except Exception as exc:  # qdrant-edge raises plain Exception
        raise _engine_error(exc, coll.path) from exc


def _index_params(schema: models.PayloadSchemaType) -> Any:
    """A payload index kept on disk: the engine's default loads a keyword index into RAM at open
    (0.6 s and 87 MB of the load at 283k points, three keys: §7f)."""
    if schema == models.PayloadSchemaType.KEYWORD:
        return qe.KeywordIndexParams(memory=qe.Memory.Cold)
    return _SCHEMA[schema]


def _create_keyword_indexes(shard: Any, keys: Sequence[str]) -> None:
    for key in keys:
        shard.update(qe.UpdateOperation.create_field_index(key, _index_params(models.PayloadSchemaType.KEYWORD)))


# --- qdrant_edge results → qdrant-client models -----------------------------------------------------


def _out_vector(vector: Any) -> Any:
    """Like qdrant-client's local mode: a lone unnamed vector comes back as a plain list."""
    if not vector:
        return None
    if not isinstance(vector, dict):
        return vector
    out = {
        name: models.SparseVector(indices=list(v.indices), values=list(v.values)) if isinstance(v, qe.SparseVector) else v
        for name, v in vector.items()
    }
    if len(out) == 1 and DENSE in out:
        return out[DENSE]
    return out


def _scored(p: Any) -> models.ScoredPoint:
    return models.ScoredPoint(
        id=_out_id(p.id), version=p.version, score=p.score, payload=p.payload, vector=_out_vector(p.vector)
    )


def _record(r: Any) -> models.Record:
    return models.Record(id=_out_id(r.id), payload=r.payload, vector=_out_vector(r.vector))


# --- one collection ---------------------------------------------------------------------------------


class _Collection:
    """One EdgeShard and its sidecar (vector config + metadata)."""

    def __init__(self, path: Path, shard: Any, meta: dict[str, Any]) -> None:
        self.path = path
        self._shard = shard
        self.meta = meta
        self.meta_lock = threading.RLock()  # re-entered by a write (``before_write``) inside a meta update
        self._shard_lock = threading.Lock()
        self._size_lock = threading.Lock()
        self._size: int | None = None  # points now; None after a write
        self._writes = 0  # bumped by every write: a count taken across a write is not kept

    @property
    def shard(self) -> Any:
        """The engine's shard; one left unloaded at open (``EMPTY_MARK``) is loaded on first use."""
        shard = self._shard
        if shard is None:
            with self._shard_lock:
                if self._shard is None:
                    self._shard = _load_shard(self)
                shard = self._shard
        return shard

    @shard.setter
    def shard(self, value: Any) -> None:
        self._shard = value

    def load(self) -> None:
        """Load the shard now if it is not (``shard`` does it on first use)."""
        _ = self.shard

    @property
    def loaded(self) -> bool:
        return self._shard is not None

    def known_empty(self) -> bool:
        """Not loaded at open because it was empty when the store was last closed and nothing has
        written to it since (``EMPTY_MARK``); it stays so until written or used."""
        return self._shard is None and bool(self.meta.get(EMPTY_MARK))

    def before_write(self) -> None:
        """Drop ``EMPTY_MARK`` from the sidecar, durably, before the first write reaches the engine: a
        run that stops after the write must not leave a sidecar saying the collection is empty."""
        if self.meta.get(EMPTY_MARK):
            with self.meta_lock:
                if self.meta.pop(EMPTY_MARK, None) is not None:
                    self.save_meta()

    def size(self) -> int:
        """Points in the collection, counted (~0.1 ms) again only after a write."""
        if self.known_empty():
            return 0
        with self._size_lock:
            n, writes = self._size, self._writes
        if n is None:
            n = self.shard.count(qe.CountRequest(exact=True))
            with self._size_lock:
                if writes == self._writes:
                    self._size = n
        return n

    def search_ef(self) -> int:
        """``auto_ef`` of the collection's size."""
        return auto_ef(self.size())

    def written(self) -> None:
        with self._size_lock:
            self._writes += 1
            self._size = None

    def save_meta(self) -> None:
        _write_json(self.path / SIDECAR, self.meta)

    def vectors_params(self) -> models.VectorParams | dict[str, models.VectorParams]:
        dense = {
            name: models.VectorParams(size=v["size"], distance=models.Distance(v["distance"])) for name, v in self.meta["vectors"].items()
        }
        if self.meta.get("unnamed") and set(dense) == {DENSE}:
            return dense[DENSE]
        return dense

    def dense_params(self) -> dict[str, models.VectorParams]:
        """``vectors_params`` by name (the unnamed dense vector under ``DENSE``), as ``_shard_config`` takes them."""
        dense = self.vectors_params()
        return {DENSE: dense} if isinstance(dense, models.VectorParams) else dense

    def sparse_params(self) -> dict[str, models.SparseVectorParams] | None:
        sparse = self.meta.get("sparse_vectors") or {}
        if not sparse:
            return None
        return {
            name: models.SparseVectorParams(modifier=models.Modifier(v["modifier"]) if v.get("modifier") else None)
            for name, v in sparse.items()
        }


class EdgeStore(QdrantBase):
    """qdrant-client's ``QdrantBase`` over one qdrant-edge shard per collection in ``path``.

    Holds an exclusive lock on ``path`` while open (a second process gets ``StoreLocked``). Threads
    of this process may read and write at once: the engine takes its own locks.

    Args:
        path: the folder of shards (``<store>/edge``); created if missing.
        keyword_indexes: payload keys given a KEYWORD index in every collection created here
            (filters and delete-by-filter on them then use the index, not a scan).
        hnsw_ef: HNSW search breadth for requests that set none; None scales it with each
            collection's size (``auto_ef``); higher trades speed for recall.
    """

    def __init__(self, path: Path, keyword_indexes: Sequence[str] = (), hnsw_ef: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.keyword_indexes = tuple(keyword_indexes)
        self.hnsw_ef = hnsw_ef
        self.closed = False
        self._guard = threading.RLock()  # the collection map: create/delete/close
        self._collections: dict[str, _Collection] = {}
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_fh.close()
            raise StoreLocked(
                f"embedded Qdrant (edge) at {self.path} is open in another process (a running `pipeline serve`?). {LOCKED_HINT}"
            ) from exc
        self._stop_warm = threading.Event()
        self.warmed_bytes = 0  # read into the page cache by the warm-up thread (for tests and logs)
        self._warmer: threading.Thread | None = None
        try:
            _ensure_space(self.path)  # loading a shard writes too (WAL segments, mmap pages)
            self._open_all()
        except BaseException:
            self.close()
            raise
        self._warmer = threading.Thread(target=self._warm, name="edge-warm", daemon=True)
        self._warmer.start()

    # -- lifecycle --

    def _open_all(self) -> None:
        for entry in sorted(self.path.iterdir()):
            if not entry.is_dir():
                continue
            if entry.name.startswith("."):
                if ".creating-" in entry.name or ".deleting-" in entry.name:
                    # a collection never finished (or never finished going): it was never visible
                    logger.warning("removing %s: left by a run that stopped while creating/deleting a collection", entry)
                    shutil.rmtree(entry, ignore_errors=True)
                continue
            self._collections[entry.name] = self._load(entry)

    def _load(self, folder: Path) -> _Collection:
        sidecar = folder / SIDECAR
        if not sidecar.is_file():
            raise StoreDamaged(
                folder,
                f"no {SIDECAR} (not a collection written by this package, or damaged)",
                "move the folder away and run `python -m pipeline check --repair`, or restore it from a backup",
            )
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreDamaged(sidecar, f"unreadable: {exc}") from exc
        coll = _Collection(folder, None, meta)
        mark = meta.get(EMPTY_MARK)
        if not (isinstance(mark, dict) and mark.get("wal") == _wal_fingerprint(folder)):
            coll.load()  # now, so a shard the engine cannot open fails the open
        return coll

    def _warm(self) -> None:
        """Read the files first searches need (``WARM_FILES``) into the page cache, smallest first.

        Best effort: stops at close, at the ``WARM_MEMORY_SHARE`` budget, or on any read error (a
        search then reads what it needs itself)."""
        try:
            files = sorted((f.stat().st_size, f) for coll in list(self._collections.values()) if coll.loaded for f in _warm_files(coll.path))
            budget = _available_memory() * WARM_MEMORY_SHARE
            for size, f in files:
                if self.warmed_bytes + size > budget:
                    logger.debug("edge warm-up stopped at %d MB (budget %d MB)", self.warmed_bytes >> 20, int(budget) >> 20)
                    return
                _read_into_cache(f, size, self._stop_warm)
                if self._stop_warm.is_set():
                    return
                self.warmed_bytes += size
        except OSError as exc:  # a segment merged away meanwhile, or unreadable: searches will say
            logger.debug("edge warm-up stopped: %s", exc)

    def close(self, **kwargs: Any) -> None:
        """Flush and close every shard, then release the lock. Safe to call twice."""
        with self._guard:
            if self.closed:
                return
            self.closed = True
            stop = getattr(self, "_stop_warm", None)
            if stop is not None:
                stop.set()
            warmer = getattr(self, "_warmer", None)
            if warmer is not None and warmer is not threading.current_thread():
                warmer.join()
            for coll in self._collections.values():
                if not coll.loaded:
                    continue
                cached: list[tuple[Path, list[tuple[int, int]]]] = []
                try:
                    coll.shard.flush()
                    info = coll.shard.info()
                    if info.points_count:
                        cached = _to_recache(coll.path)
                    coll.shard.close()
                    with coll.meta_lock:
                        if info.points_count == 0:
                            schema = {key: _schema_name(idx) for key, idx in info.payload_schema.items()}
                            coll.meta[EMPTY_MARK] = {"payload_schema": schema, "wal": _wal_fingerprint(coll.path)}
                            coll.save_meta()
                        elif coll.meta.pop(EMPTY_MARK, None) is not None:  # a void mark (see EMPTY_MARK)
                            coll.save_meta()
                except Exception as exc:  # closing must not hide the error that got us here
                    logger.warning("closing %s: %s", coll.path, exc)
                    continue
                _keep_cached(cached)
            self._collections.clear()
            fh = getattr(self, "_lock_fh", None)
            if fh is not None and not fh.closed:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()

    def flush(self) -> None:
        """Make every write so far durable (segments on disk, not only the WAL)."""
        for coll in list(self._collections.values()):
            if not coll.loaded:
                continue
            try:
                coll.shard.flush()
            except Exception as exc:
                raise _engine_error(exc, coll.path) from exc

    def optimize(self) -> bool:
        """Merge segments and build HNSW indexes; True if anything changed. A collection without room
        for a rewritten copy of its segments is skipped with a warning (nothing is lost)."""
        changed = False
        for coll in list(self._collections.values()):
            if not coll.loaded:  # empty at the last close and not written since: nothing to index
                continue
            try:
                _ensure_space(coll.path, _blocks_bytes(coll.path / "segments"))  # a merge rewrites segments
            except StoreUnavailable as exc:  # DiskFull: the data is committed; only the index build waits
                logger.warning("skipped optimizing %s (searches stay exact until the next ingest): %s", coll.path.name, exc)
                continue
            try:
                changed = bool(coll.shard.optimize()) or changed
            except Exception as exc:
                raise _engine_error(exc, coll.path) from exc
        return changed

    def outdated(self) -> list[str]:
        """Collections written before the cold, quantized layout (``_shard_config``): they answer as
        before, but load their payload indexes into RAM at open and search float vectors."""
        return sorted(name for name, coll in self._collections.items() if "quantization" not in coll.meta)

    def upgrade(self) -> list[str]:
        """Rewrite every ``outdated()`` collection in the current layout, in place; the names done.

        The engine applies a changed config by rebuilding the shard's segments (~2 min at 283k
        points): only ``check --repair`` calls this, in a process that holds the store alone. A crash
        midway leaves a shard the engine reloads with either config; the sidecar is updated last,
        so the next repair does it again."""
        done = []
        with self._guard:
            for name in self.outdated():
                coll = self._collections[name]
                coll.before_write()
                dense = coll.dense_params()
                sparse = coll.sparse_params() or {}
                _ensure_space(coll.path, _blocks_bytes(coll.path / "segments"))
                try:
                    coll.shard.flush()
                    coll.shard.close()
                    _wal_options(coll.path)
                    coll.shard = qe.EdgeShard.load(str(coll.path), _shard_config(dense, sparse))
                    for key in self.keyword_indexes:
                        coll.shard.update(qe.UpdateOperation.delete_field_index(key))
                    _create_keyword_indexes(coll.shard, self.keyword_indexes)
                    coll.shard.optimize()
                    coll.shard.flush()
                except Exception as exc:
                    raise _engine_error(exc, coll.path) from exc
                with coll.meta_lock:
                    coll.meta.update(quantization=QUANTIZATION, memory=COLD)
                    coll.save_meta()
                coll.written()
                done.append(name)
        return done

    def _get(self, name: str) -> _Collection:
        if self.closed:
            raise RuntimeError("EdgeStore is closed; open a new client")
        coll = self._collections.get(name)
        if coll is None:
            raise ValueError(f"Collection {name} not found")
        return coll

    def _update(self, coll: _Collection, op: Any) -> None:
        _ensure_space(coll.path)
        coll.before_write()
        try:
            coll.shard.update(op)
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        finally:
            coll.written()

    # -- collections --

    def get_collections(self, **kwargs: Any) -> models.CollectionsResponse:
        return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in sorted(self._collections)])

    def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        return collection_name in self._collections

    def get_collection(self, collection_name: str, **kwargs: Any) -> models.CollectionInfo:
        coll = self._get(collection_name)
        if coll.known_empty():  # as the shard said at the last close
            marked = (coll.meta.get(EMPTY_MARK) or {}).get("payload_schema", {})
            schema = {key: models.PayloadIndexInfo(data_type=models.PayloadSchemaType(t), points=0) for key, t in marked.items()}
            counts = {"indexed_vectors_count": 0, "points_count": 0, "segments_count": 0}
        else:
            info = coll.shard.info()
            schema = {
                key: models.PayloadIndexInfo(data_type=models.PayloadSchemaType(_schema_name(idx)), points=idx.points)
                for key, idx in info.payload_schema.items()
            }
            counts = {"indexed_vectors_count": info.indexed_vectors_count, "points_count": info.points_count, "segments_count": info.segments_count}
        return models.CollectionInfo(
            status=models.CollectionStatus.GREEN,
            optimizer_status=models.OptimizersStatusOneOf.OK,
            **counts,
            payload_schema=schema,
            config=models.CollectionConfig(
                params=models.CollectionParams(vectors=coll.vectors_params(), sparse_vectors=coll.sparse_params()),
                hnsw_config=models.HnswConfig(**coll.meta.get("hnsw", {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000})),
                optimizer_config=models.OptimizersConfig(
                    deleted_threshold=0.2, vacuum_min_vector_number=1000, default_segment_number=0, flush_interval_sec=5
                ),
                wal_config=models.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0),
                metadata=dict(coll.meta.get("metadata") or {}) or None,
            ),
        )

    def create_collection(
        self,
        collection_name: str,
        vectors_config: models.VectorParams | Mapping[str, models.VectorParams] | None = None,
        sparse_vectors_config: Mapping[str, models.SparseVectorParams] | None = None,
        metadata: models.Payload | None = None,
        **kwargs: Any,
    ) -> bool:
        """Build the shard in a temp folder (payload indexes and sidecar included), then rename it in."""
        with self._guard:
            if self.closed:
                raise RuntimeError("EdgeStore is closed; open a new client")
            if collection_name in self._collections:
                raise ValueError(f"Collection {collection_name} already exists")
            if not collection_name or "/" in collection_name or collection_name.startswith("."):
                raise ValueError(f"invalid collection name {collection_name!r}")
            unnamed = isinstance(vectors_config, models.VectorParams)
            dense = {DENSE: vectors_config} if unnamed else dict(vectors_config or {})
            sparse = dict(sparse_vectors_config or {})
            for name, params in dense.items():
                if params.multivector_config is not None:
                    raise NotImplementedError("qdrant-edge backend: multivectors")
            meta = {
                "format": 1,
                "unnamed": unnamed,
                "vectors": {name: {"size": p.size, "distance": p.distance.value} for name, p in dense.items()},
                "sparse_vectors": {
                    name: {"modifier": p.modifier.value if p and p.modifier else None} for name, p in sparse.items()
                },
                "metadata": json.loads(json.dumps(metadata or {}, default=str)),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "hnsw": HNSW,
                "memory": COLD,
            }
            meta["quantization"] = QUANTIZATION
            config = _shard_config(dense, sparse)
            final = self.path / collection_name
            if final.exists():
                raise StoreDamaged(final, "folder exists but is not an open collection", "move it away and run the command again")
            tmp = self.path / f".{collection_name}.creating-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            _ensure_space(self.path)
            try:
                shard = qe.EdgeShard.create(str(tmp), config)
                _create_keyword_indexes(shard, self.keyword_indexes)
                shard.flush()
                shard.close()
                _wal_options(tmp)
                _write_json(tmp / SIDECAR, meta)
                os.replace(tmp, final)
                shard = qe.EdgeShard.load(str(final))
            except Exception as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, (StoreLocked, StoreUnavailable)):  # DiskFull is one
                    raise
                raise _engine_error(exc, final) from exc
            self._collections[collection_name] = _Collection(final, shard, meta)
            logger.debug("created edge collection %s at %s", collection_name, final)
            return True

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        with self._guard:
            coll = self._collections.pop(collection_name, None)
            if coll is None:
                return False
            if coll.loaded:
                coll.shard.close()
            trash = self.path / f".{collection_name}.deleting-{os.getpid()}"
            os.replace(coll.path, trash)  # gone at once for a reader; removed below (or on next open)
            shutil.rmtree(trash, ignore_errors=True)
            return True

    def update_collection(self, collection_name: str, metadata: models.Payload | None = None, **kwargs: Any) -> bool:
        unsupported = [k for k, v in kwargs.items() if v is not None]
        if unsupported:
            raise NotImplementedError(f"qdrant-edge backend: update_collection({', '.join(unsupported)})")
        coll = self._get(collection_name)
        if metadata is not None:
            with coll.meta_lock:
                merged = dict(coll.meta.get("metadata") or {})
                merged.update(json.loads(json.dumps(metadata, default=str)))
                coll.meta["metadata"] = {k: v for k, v in merged.items() if v is not None}
                coll.save_meta()
        return True

    def create_payload_index(
        self,
        collection_name: str,
        field_name: str,
        field_schema: Any = None,
        field_type: Any = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        coll = self._get(collection_name)
        schema = field_schema if field_schema is not None else field_type
        if isinstance(schema, str):
            schema = models.PayloadSchemaType(schema)
        if schema not in _SCHEMA:
            raise NotImplementedError(f"qdrant-edge backend: create_payload_index with schema {schema!r}")
        self._update(coll, qe.UpdateOperation.create_field_index(field_name, _index_params(schema)))
        return _done()

    def create_vector_name(
        self, collection_name: str, vector_name: str, vector_name_config: Any, **kwargs: Any
    ) -> models.UpdateResult:
        coll = self._get(collection_name)
        if not isinstance(vector_name_config, models.SparseVectorNameConfig):
            raise NotImplementedError("qdrant-edge backend: create_vector_name for dense vectors")
        modifier = vector_name_config.sparse.modifier if vector_name_config.sparse else None
        with coll.meta_lock:
            self._update(
                coll,
                qe.UpdateOperation.create_sparse_vector(vector_name, modifier=qe.Modifier.Idf if modifier == models.Modifier.IDF else None),
            )
            coll.meta.setdefault("sparse_vectors", {})[vector_name] = {"modifier": modifier.value if modifier else None}
            coll.save_meta()
        return _done()

    def delete_vector_name(self, collection_name: str, vector_name: str, **kwargs: Any) -> models.UpdateResult:
        coll = self._get(collection_name)
        with coll.meta_lock:
            self._update(coll, qe.UpdateOperation.delete_vector_name(vector_name))
            coll.meta.get("vectors", {}).pop(vector_name, None)
            coll.meta.get("sparse_vectors", {}).pop(vector_name, None)
            coll.save_meta()
        return _done()

    # -- points: writes --

    def upsert(self, collection_name: str, points: Any, update_filter: models.Filter | None = None, **kwargs: Any) -> models.UpdateResult:
        coll = self._get(collection_name)
        if isinstance(points, models.Batch):
            vectors = points.vectors
            n = len(points.ids)
            if isinstance(vectors, Mapping):
                per_point = [{name: vs[i] for name, vs in vectors.items()} for i in range(n)]
            else:
                per_point = list(vectors)
            payloads = points.payloads or [None] * n
            structs = [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in zip(points.ids, per_point, payloads)]
        else:
            structs = list(points)
        self._upsert(coll, structs, update_filter)
        return _done()

    def _upsert(self, coll: _Collection, points: Iterable[Any], update_filter: models.Filter | None = None) -> None:
        edge_points = [qe.Point(_point_id(p.id), _vectors(p.vector), p.payload or {}) for p in points]
        if edge_points:
            self._update(coll, qe.UpdateOperation.upsert_points(edge_points, condition=_filter(update_filter)))

    def upload_points(
        self, collection_name: str, points: Iterable[Any], batch_size: int = 64, update_filter: models.Filter | None = None, **kwargs: Any
    ) -> None:
        coll = self._get(collection_name)
        batch: list[Any] = []
        for p in points:
            batch.append(p)
            if len(batch) >= max(batch_size, 1):
                self._upsert(coll, batch, update_filter)
                batch = []
        self._upsert(coll, batch, update_filter)

    def update_vectors(
        self, collection_name: str, points: Sequence[models.PointVectors], update_filter: models.Filter | None = None, **kwargs: Any
    ) -> models.UpdateResult:
        coll = self._get(collection_name)
        ops = [qe.PointVectors(_point_id(p.id), _vectors(p.vector)) for p in points]
        if ops:
            self._update(coll, qe.UpdateOperation.update_vectors(ops, condition=_filter(update_filter)))
        return _done()

    def delete(self, collection_name: str, points_selector: Any, **kwargs: Any) -> models.UpdateResult:
        coll = self._get(collection_name)
        if isinstance(points_selector, models.PointIdsList):
            op = qe.UpdateOperation.delete_points([_point_id(i) for i in points_selector.points])
        elif isinstance(points_selector, models.FilterSelector):
            op = qe.UpdateOperation.delete_points_by_filter(_filter(points_selector.filter))
        elif isinstance(points_selector, models.Filter):
            op = qe.UpdateOperation.delete_points_by_filter(_filter(points_selector))
        elif isinstance(points_selector, list):
            op = qe.UpdateOperation.delete_points([_point_id(i) for i in points_selector])
        else:
            raise NotImplementedError(f"qdrant-edge backend: delete with {type(points_selector).__name__}")
        self._update(coll, op)
        return _done()

    def set_payload(
        self, collection_name: str, payload: models.Payload, points: Any, key: str | None = None, **kwargs: Any
    ) -> models.UpdateResult:
        return self._payload_op(collection_name, payload, points, key, overwrite=False)

    def overwrite_payload(self, collection_name: str, payload: models.Payload, points: Any, **kwargs: Any) -> models.UpdateResult:
        return self._payload_op(collection_name, payload, points, None, overwrite=True)

    def _payload_op(self, collection_name: str, payload: models.Payload, points: Any, key: str | None, overwrite: bool) -> models.UpdateResult:
        coll = self._get(collection_name)
        U = qe.UpdateOperation
        if isinstance(points, models.PointIdsList) or isinstance(points, list):
            ids = [_point_id(i) for i in (points.points if isinstance(points, models.PointIdsList) else points)]
            op = U.overwrite_payload(ids, payload, key) if overwrite else U.set_payload(ids, payload, key)
        else:
            flt = _filter(points.filter if isinstance(points, models.FilterSelector) else points)
            op = U.overwrite_payload_by_filter(flt, payload, key) if overwrite else U.set_payload_by_filter(flt, payload, key)
        self._update(coll, op)
        return _done()

    # -- points: reads --

    def _request(
        self,
        coll: _Collection,
        query: Any,
        using: str | None,
        prefetch: Any,
        query_filter: models.Filter | None,
        search_params: models.SearchParams | None,
        limit: int,
        offset: int | None,
        with_payload: Any,
        with_vectors: Any,
        score_threshold: float | None,
        lookup_from: Any = None,
    ) -> qe.QueryRequest:
        if lookup_from is not None:
            raise NotImplementedError("qdrant-edge backend: query_points with lookup_from")
        if limit < 1:
            raise ValueError(f"limit value {limit} is invalid. Must be 1 or larger.")
        prefetches = prefetch if isinstance(prefetch, list) else ([prefetch] if prefetch is not None else [])
        ef = self.hnsw_ef if self.hnsw_ef is not None else coll.search_ef()
        return qe.QueryRequest(
            limit=limit,
            offset=offset or 0,
            query=_query(query, using),
            prefetches=[_prefetch(p, ef) for p in prefetches] or None,
            with_vector=_with_vectors(with_vectors),
            with_payload=_with_payload(with_payload),
            filter=_filter(query_filter),
            score_threshold=score_threshold,
            params=_search_params(search_params, ef),
        )

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        using: str | None = None,
        prefetch: Any = None,
        query_filter: models.Filter | None = None,
        search_params: models.SearchParams | None = None,
        limit: int = 10,
        offset: int | None = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        score_threshold: float | None = None,
        lookup_from: Any = None,
        **kwargs: Any,
    ) -> rest.QueryResponse:
        coll = self._get(collection_name)
        req = self._request(
            coll,
            query, using, prefetch, query_filter, search_params, limit, offset, with_payload, with_vectors, score_threshold, lookup_from
        )
        try:
            hits = coll.shard.query(req)
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        return rest.QueryResponse(points=[_scored(p) for p in hits])

    def search_hits(
        self,
        collection_name: str,
        queries: Sequence[tuple[str | None, Any]],
        query_filter: models.Filter | None,
        limit: int,
        with_payload: Sequence[str] | bool,
    ) -> list[list[tuple[str, float, dict[str, Any]]]]:
        """(id as text, score, payload) of each query's best ``limit`` points, in one engine call.

        Each query is (vector name, None for the dense one; a dense list or ``models.SparseVector``).
        What ``query_batch_points`` does, without qdrant-client's models: the engine holds the GIL
        while it searches, so a service process runs its searches and all its Python on one core,
        and building a validated ``ScoredPoint`` per hit (30-90 a retrieve) was Python time taken
        from every other request (docs/service.md). An empty collection (a store without LLM
        references has two) answers without a search.
        """
        coll = self._get(collection_name)
        if not coll.size():
            return [[] for _ in queries]
        batch = [self._request(coll, vector, using, None, query_filter, None, limit, None, with_payload, False, None) for using, vector in queries]
        try:
            results = coll.shard.query_batch(qe.QueryBatchRequest(batch)) if len(batch) > 1 else [coll.shard.query(batch[0])]
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        return [[(str(p.id), p.score, p.payload or {}) for p in hits] for hits in results]

    def query_batch_points(self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any) -> list[rest.QueryResponse]:
        coll = self._get(collection_name)
        batch = [
            self._request(
                coll,
                r.query,
                r.using,
                r.prefetch,
                r.filter,
                r.params,
                r.limit if r.limit is not None else 10,
                r.offset,
                r.with_payload if r.with_payload is not None else False,
                r.with_vector,
                r.score_threshold,
                r.lookup_from,
            )
            for r in requests
        ]
        try:
            results = coll.shard.query_batch(qe.QueryBatchRequest(batch))
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        return [rest.QueryResponse(points=[_scored(p) for p in hits]) for hits in results]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        order_by: Any = None,
        offset: Any = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        **kwargs: Any,
    ) -> tuple[list[models.Record], Any]:
        if order_by is not None:
            raise NotImplementedError("qdrant-edge backend: scroll with order_by")
        if limit < 1:
            raise ValueError(f"limit value {limit} is invalid. Must be 1 or larger.")
        coll = self._get(collection_name)
        req = qe.ScrollRequest(
            offset=_point_id(offset) if offset is not None else None,
            limit=limit,
            filter=_filter(scroll_filter),
            with_payload=_with_payload(with_payload),
            with_vector=_with_vectors(with_vectors),
        )
        try:
            records, next_offset = coll.shard.scroll(req)
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        return [_record(r) for r in records], _out_id(next_offset) if next_offset is not None else None

    def count(self, collection_name: str, count_filter: models.Filter | None = None, exact: bool = True, **kwargs: Any) -> models.CountResult:
        coll = self._get(collection_name)
        if coll.known_empty():
            return models.CountResult(count=0)
        try:
            n = coll.shard.count(qe.CountRequest(filter=_filter(count_filter), exact=True))
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        return models.CountResult(count=n)

    def retrieve(
        self, collection_name: str, ids: Sequence[Any], with_payload: Any = True, with_vectors: Any = False, **kwargs: Any
    ) -> list[models.Record]:
        coll = self._get(collection_name)
        try:
            records = coll.shard.retrieve([_point_id(i) for i in ids], _with_payload(with_payload), _with_vectors(with_vectors))
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        return [_record(r) for r in records]


def _done() -> models.UpdateResult:
    return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)


def _not_implemented(name: str) -> Any:
    def method(self: EdgeStore, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"qdrant-edge backend does not implement QdrantBase.{name}")

    method.__name__ = name
    return method


# Everything of QdrantBase this package does not use fails loudly, naming the method.
for _name, _attr in vars(QdrantBase).items():
    if callable(_attr) and not _name.startswith("_") and _name not in vars(EdgeStore):
        setattr(EdgeStore, _name, _not_implemented(_name))


class EdgeClient(QdrantClient):
    """A ``QdrantClient`` over ``EdgeStore``: every caller keeps using qdrant-client's API.

    ``QdrantClient.__init__`` sets more than ``_client`` (init options, the inference inspector and
    the fastembed mixin every method goes through), so this subclass runs it as for ``:memory:``,
    which builds nothing on disk, then swaps the inner client for ``EdgeStore``. A subclass (not a
    patched instance) lets ``flush``/``optimize`` be methods and lets callers recognise the backend.

    Raises:
        StoreLocked: another process has the store open.
        StoreDamaged: a collection folder has no (readable) sidecar.
        StoreUnavailable: the engine cannot open a shard.
    """

    def __init__(self, path: Path, keyword_indexes: Sequence[str] = (), hnsw_ef: int | None = None) -> None:
        super().__init__(location=":memory:")
        self._client.close()
        self._client = EdgeStore(path, keyword_indexes, hnsw_ef)
        # Not {"path": ...}: AsyncQdrantClient(**init_options) would open local mode inside the edge
        # folder. There is no async edge client, so building one from these options fails loudly.
        self._init_options = {"edge_path": str(path)}

    @property
    def store(self) -> EdgeStore:
        return self._client  # type: ignore[return-value]

    def upsert(
        self,
        collection_name: str,
        points: Any,
        wait: bool = True,
        ordering: Any = None,
        shard_key_selector: Any = None,
        update_filter: models.Filter | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """``QdrantClient.upsert`` without its check for inference objects, a Python pass over every number
        of every point (~8 % of a bulk upsert here): the engine takes vectors only (anything else fails
        naming its type), and every write here is applied before the call returns (``wait``)."""
        return self.store.upsert(collection_name, points, update_filter=update_filter)

    def flush(self) -> None:
        """Durable on disk now (the WAL already survives kill -9; this also writes the segments)."""
        self.store.flush()

    def optimize(self) -> bool:
        """Build HNSW indexes and merge segments (after a bulk ingest); True if anything changed."""
        return self.store.optimize()

    def outdated(self) -> list[str]:
        return self.store.outdated()

    def upgrade(self) -> list[str]:
        return self.store.upgrade()
