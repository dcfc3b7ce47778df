"""The embedded engine itself: one qdrant-edge shard per collection, opened, written, searched, closed.

``EdgeEngine`` is what ``store.qdrant.open_client`` returns for the embedded backend. It holds the
store's lock, loads and warms the shards, creates and drops collections, flushes and optimizes, and
answers the reads a query process makes (``search_hits``, ``rows``, ``count_where``, ``scroll_rows``,
``collection_meta``) with the store's own plain types (``store.where``), never importing
``qdrant_client``: that import costs ~0.6 s of CPU in every new process (its package ``__init__``
loads both clients), more than opening the store. Everything else qdrant-client's API offers (what
LlamaIndex's ``QdrantVectorStore``, migrate and repair call) is reached through ``qdrant``, the
``EdgeClient`` facade (``client.py``) built over this engine on first use; unknown public attributes
fall through to it, so callers written against ``QdrantClient`` keep working.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from pipeline.errors import StoreDamaged, StoreLocked, StoreUnavailable
from pipeline.store.edge.files import _blocks_bytes, _ensure_space, _write_json
from pipeline.store.edge.pagecache import _available_memory, _keep_cached, _read_into_cache, _to_recache, _warm_files
from pipeline.store.edge.shard import _Collection, _create_keyword_indexes, _engine_error, _schema_name, _shard_config, _wal_fingerprint, _wal_options
from pipeline.store.edge.tuning import COLD, DENSE, EMPTY_MARK, HNSW, LOCK_FILE, OVERSAMPLING, QUANTIZATION, SIDECAR, WARM_MEMORY_SHARE
from pipeline.store.where import Sparse, Where, to_edge

logger = logging.getLogger(__name__)

Hit = tuple[str, float, dict[str, Any]]


class EdgeEngine:
    """One qdrant-edge shard per collection in ``path``, and the lean reads of a query process.

    Holds an exclusive lock on ``path`` while open (a second process gets ``StoreLocked``). Threads
    of this process may read and write at once: the engine takes its own locks.

    Args:
        path: the folder of shards (``<store>/edge``); created if missing.
        keyword_indexes: payload keys given a KEYWORD index in every collection created here
            (filters and delete-by-filter on them then use the index, not a scan).
        hnsw_ef: HNSW search breadth for requests that set none; None scales it with each
            collection's size (``auto_ef``); higher trades speed for recall.
        facade: builds the qdrant-client facade over this engine when first needed
            (``store.qdrant.open_client`` passes ``EdgeClient``; injected, so this module never
            imports the facade, which imports it).

    Raises:
        StoreLocked: another process has the store open.
        StoreDamaged: a collection folder has no (readable) sidecar.
        StoreUnavailable: the engine cannot open a shard.
    """

    def __init__(
        self, path: Path, keyword_indexes: Sequence[str] = (), hnsw_ef: int | None = None, facade: Callable[[EdgeEngine], Any] | None = None
    ) -> None:
        self._make_facade = facade
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
            raise StoreLocked.open_elsewhere(f"embedded Qdrant (edge) at {self.path}") from exc
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
                dense = coll.dense_meta()
                sparse = coll.meta.get("sparse_vectors") or {}
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
            raise RuntimeError("the edge store is closed; open a new client")
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


    # -- the qdrant-client facade, built on first use --

    @property
    def qdrant(self) -> Any:
        """An ``EdgeClient`` (a real ``QdrantClient``) over this engine, for LlamaIndex and the
        qdrant-client API; built once, on first use (it imports qdrant_client)."""
        facade = self.__dict__.get("_facade")
        if facade is None:
            if self._make_facade is None:
                raise AttributeError("this EdgeEngine was opened without a qdrant-client facade")
            with self._guard:
                facade = self.__dict__.get("_facade")
                if facade is None:
                    facade = self._facade = self._make_facade(self)
        return facade

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class lacks: qdrant-client's API (get_collection, scroll,
        # upsert ...) answered by the facade. Private names never fall through (a half-built engine
        # must fail plainly, not build a facade).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.qdrant, name)

    # -- collections --

    def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        return collection_name in self._collections

    def collection_names(self) -> list[str]:
        return sorted(self._collections)

    def collection_meta(self, name: str) -> dict[str, Any] | None:
        """The collection's sidecar (vectors, sparse vectors, metadata), or None if there is none."""
        coll = self._collections.get(name)
        return None if coll is None else coll.meta

    def create(self, name: str, meta: dict[str, Any]) -> None:
        """Build a collection described by ``meta`` (the sidecar: ``vectors``, ``sparse_vectors``,
        ``metadata``) in a temp folder (shard, payload indexes, sidecar), then rename it in."""
        with self._guard:
            if self.closed:
                raise RuntimeError("the edge store is closed; open a new client")
            if name in self._collections:
                raise ValueError(f"Collection {name} already exists")
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"invalid collection name {name!r}")
            meta = {
                "format": 1,
                **meta,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "hnsw": HNSW,
                "memory": COLD,
                "quantization": QUANTIZATION,
            }
            config = _shard_config(meta["vectors"], meta.get("sparse_vectors") or {})
            final = self.path / name
            if final.exists():
                raise StoreDamaged(final, "folder exists but is not an open collection", "move it away and run the command again")
            tmp = self.path / f".{name}.creating-{os.getpid()}"
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
            self._collections[name] = _Collection(final, shard, meta)
            logger.debug("created edge collection %s at %s", name, final)

    def drop(self, name: str) -> bool:
        """Remove a collection: gone at once for a reader (renamed away), its files removed after."""
        with self._guard:
            coll = self._collections.pop(name, None)
            if coll is None:
                return False
            if coll.loaded:
                coll.shard.close()
            trash = self.path / f".{name}.deleting-{os.getpid()}"
            os.replace(coll.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
            return True

    # -- lean reads and deletes (a query process's whole use of the store) --

    def request(self, coll: _Collection, query: Any, where: Any, limit: int, with_payload: Any) -> qe.QueryRequest:
        """A nearest-neighbour request: ``query`` a dense list (the unnamed vector unless ``using``
        says) or ``Sparse``, given as (using, vector); quantized vectors rescored (``OVERSAMPLING``)."""
        using, vector = query
        if isinstance(vector, Sparse):
            vector = qe.SparseVector(list(vector.indices), [float(v) for v in vector.values])
        elif hasattr(vector, "tolist"):
            vector = vector.tolist()
        elif not isinstance(vector, list):  # qdrant-client's SparseVector, from an older caller
            vector = qe.SparseVector(list(vector.indices), [float(v) for v in vector.values])
        ef = self.hnsw_ef if self.hnsw_ef is not None else coll.search_ef()
        return qe.QueryRequest(
            limit=limit,
            offset=0,
            query=qe.Query.Nearest(vector, using=using if using is not None else DENSE),
            prefetches=None,
            with_vector=False,
            with_payload=_payload_keys(with_payload),
            filter=_edge_filter(where),
            score_threshold=None,
            params=qe.SearchParams(
                hnsw_ef=ef, exact=False, indexed_only=False, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
            ),
        )

    def search_hits(self, collection_name: str, queries: Sequence[tuple[str | None, Any]], where: Any, limit: int, keys: Sequence[str] | bool) -> list[list[Hit]]:
        """(id as text, score, payload) of each query's best ``limit`` points, in one engine call.

        Each query is (vector name, None for the dense one; a dense list or ``Sparse``). The engine
        holds the GIL while it searches, so a service process runs its searches and all its Python on
        one core: hits stay plain tuples (a validated ``ScoredPoint`` per hit was Python time taken
        from every other request, docs/service.md). An empty collection (a store without LLM
        references has two) answers without a search.
        """
        coll = self._get(collection_name)
        if not coll.size():
            return [[] for _ in queries]
        if limit < 1:
            raise ValueError(f"limit value {limit} is invalid. Must be 1 or larger.")
        batch = [self.request(coll, q, where, limit, keys) for q in queries]
        try:
            results = coll.shard.query_batch(qe.QueryBatchRequest(batch)) if len(batch) > 1 else [coll.shard.query(batch[0])]
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        return [[(str(p.id), p.score, p.payload or {}) for p in hits] for hits in results]

    def rows(self, name: str, ids: Sequence[Any], keys: Sequence[str] | bool) -> list[tuple[str, dict[str, Any]]]:
        """(id, the asked payload keys) of the points among ``ids`` that exist."""
        coll = self._get(name)
        try:
            records = coll.shard.retrieve([_pid(i) for i in ids], _payload_keys(keys), False)
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc
        return [(str(r.id), dict(r.payload or {})) for r in records]

    def count_where(self, name: str, where: Any = None) -> int:
        """Points in the collection (matching ``where``, a ``Where`` or qdrant-client filter); 0 if none."""
        coll = self._collections.get(name)
        if coll is None or coll.known_empty():
            return 0
        try:
            return coll.shard.count(qe.CountRequest(filter=_edge_filter(where), exact=True))
        except Exception as exc:
            raise _engine_error(exc, coll.path) from exc

    def scroll_rows(self, name: str, keys: Sequence[str] | bool, where: Any = None, page: int = 1024) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id and the asked payload keys (matching ``where``), in pages."""
        coll = self._get(name)
        offset = None
        while True:
            req = qe.ScrollRequest(offset=offset, limit=page, filter=_edge_filter(where), with_payload=_payload_keys(keys), with_vector=False)
            try:
                records, offset = coll.shard.scroll(req)
            except Exception as exc:
                raise _engine_error(exc, coll.path) from exc
            for r in records:
                yield str(r.id), dict(r.payload or {})
            if offset is None:
                return

    def delete_ids(self, name: str, ids: Sequence[Any]) -> None:
        coll = self._get(name)
        if ids:
            self._update(coll, qe.UpdateOperation.delete_points([_pid(i) for i in ids]))


def _pid(pid: Any) -> Any:
    """A point id as the engine takes it: text for a UUID, an int as is."""
    return pid if isinstance(pid, (int, str)) else str(pid)


def _payload_keys(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return bool(value)
    return list(value)


def _edge_filter(where: Any) -> Any:
    """A ``Where`` (or None) without qdrant-client; a qdrant-client ``Filter`` from an older caller
    through the facade's converter (that caller has imported qdrant-client already)."""
    if where is None or isinstance(where, Where):
        return to_edge(where)
    from pipeline.store.edge.convert import _filter

    return _filter(where)
