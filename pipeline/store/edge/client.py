"""qdrant-client's ``QdrantBase`` over qdrant-edge shards: the facade (``EdgeStore``) and ``EdgeClient``.

Over 500 lines for one reason: it is one class implementing one interface, method by method (the
methods qdrant-client's API and LlamaIndex's ``QdrantVectorStore`` call), each a few lines of
conversion (``convert.py``) around the shard (``shard.py``); splitting the class would split the interface.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import QdrantClient, models
from qdrant_client.client_base import QdrantBase
from qdrant_client.http import models as rest

from pipeline.errors import StoreDamaged, StoreLocked, StoreUnavailable
from pipeline.store.edge.convert import _filter, _out_id, _point_id, _prefetch, _query, _record, _scored, _search_params, _vectors, _with_payload, _with_vectors
from pipeline.store.edge.files import _blocks_bytes, _ensure_space, _write_json
from pipeline.store.edge.pagecache import _available_memory, _keep_cached, _read_into_cache, _to_recache, _warm_files
from pipeline.store.edge.shard import _Collection, _create_keyword_indexes, _engine_error, _index_params, _schema_name, _shard_config, _wal_fingerprint, _wal_options
from pipeline.store.edge.tuning import COLD, DENSE, EMPTY_MARK, HNSW, LOCK_FILE, QUANTIZATION, SIDECAR, WARM_MEMORY_SHARE, _SCHEMA

logger = logging.getLogger(__name__)

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

    def search_hits(
        self, name: str, queries: Sequence[tuple[str | None, Any]], flt: models.Filter | None, limit: int, keys: list[str] | bool
    ) -> list[list[tuple[str, float, dict[str, Any]]]]:
        """The search fast path, part of this client's interface (``qdrant.search`` uses it when present):
        hits as plain tuples, without qdrant-client's models (the engine holds the GIL while searching)."""
        return self.store.search_hits(name, queries, flt, limit, keys)
