"""One collection on disk: its shard's config and WAL options, its sidecar marks, loading and engine errors.

A collection is a folder: the engine's shard (segments/, wal/, edge_config.json) and our sidecar
(collection.json: vector config, metadata, the empty-at-close mark). ``_Collection`` loads the shard
lazily and turns the engine's plain exceptions into our error tree (``engine_error``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from pipeline.errors import StoreDamaged, StoreLocked, StoreUnavailable
from pipeline.store.edge.files import _write_json
from pipeline.store.edge.tuning import EMPTY_MARK, ENGINE_CONFIG, HNSW, QUANTIZATION, SEARCH_THREADS, SIDECAR, WAL_OPTIONS, _DISTANCE, _SCHEMA, auto_ef

logger = logging.getLogger(__name__)

def _engine_error(exc: Exception, path: Path) -> Exception:
    """Our error for an exception raised by qdrant-edge (it raises plain ``Exception``)."""
    text = str(exc)
    if "WouldBlock" in text:
        return StoreLocked.open_elsewhere(f"embedded Qdrant (edge) at {path}")
    if "No space" in text or "os error 28" in text:
        from pipeline.errors import DiskFull

        return DiskFull(path, f"qdrant-edge: {text}")
    if any(s in text.lower() for s in DAMAGE_SIGNS):  # a file the engine cannot read: retrying cannot help
        return StoreDamaged(path, f"qdrant-edge: {text}", "run `python -m pipeline check --repair`: it rebuilds the collection from the docstore and the ingest cache")
    return StoreUnavailable(f"embedded Qdrant (edge) at {path}: {text}")


# Engine errors that mean a collection's files are damaged (truncated pages, garbage JSON), seen with
# qdrant-edge 0.9.0 on files cut or overwritten by hand (tests/e2e/test_damage.py).
DAMAGE_SIGNS = ("io error", "out of bounds", "deserialize", "corrupt", "checksum", "failed to load segment", "failed to read")


def _shard_config(
    dense: Mapping[str, Mapping[str, Any]],
    sparse: Mapping[str, Mapping[str, Any] | None],
    hnsw: Mapping[str, int] = HNSW,
    quantile: float = QUANTIZATION["quantile"],
) -> qe.EdgeConfig:
    """A shard of the current layout: HNSW as ``hnsw``, int8-quantized dense vectors, every part ``Cold``,
    ``SEARCH_THREADS`` search threads (see the constants). A shard loaded with it keeps its data (the
    engine checks the vectors match) and its config file is rewritten with it. ``dense`` and ``sparse``
    are as the sidecar records them: name → ``{"size", "distance"}`` / ``{"modifier"}``."""
    cold = qe.Memory.Cold
    quant = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=quantile, memory=cold)
    return qe.EdgeConfig(
        hnsw_config=qe.HnswIndexConfig(**hnsw, memory=cold),
        payload_memory=cold,
        id_tracker_memory=cold,
        max_search_threads=SEARCH_THREADS,
        vectors={
            name: qe.EdgeVectorParams(size=int(p["size"]), distance=_DISTANCE[p["distance"]], memory=cold, quantization_config=quant)
            for name, p in dense.items()
        },
        sparse_vectors={
            name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if p and p.get("modifier") == "idf" else None, memory=cold)
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
        return _shard_config(coll.dense_meta(), meta.get("sparse_vectors") or {}, meta.get("hnsw", HNSW), quantile)
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


def _index_params(schema: str) -> Any:
    """A payload index kept on disk: the engine's default loads a keyword index into RAM at open
    (0.6 s and 87 MB of the load at 283k points, three keys: §7f). ``schema`` as qdrant names it."""
    if schema == "keyword":
        return qe.KeywordIndexParams(memory=qe.Memory.Cold)
    return _SCHEMA[schema]


def _create_keyword_indexes(shard: Any, keys: Sequence[str]) -> None:
    for key in keys:
        shard.update(qe.UpdateOperation.create_field_index(key, _index_params("keyword")))


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

    def dense_meta(self) -> dict[str, Any]:
        """Dense vectors by name (the unnamed one under ``DENSE``), as the sidecar records them."""
        return dict(self.meta["vectors"])
