"""qdrant-client's ``QdrantBase`` over the engine (``engine.py``): the facade (``EdgeStore``) and ``EdgeClient``.

Imported only when something speaks qdrant-client's API to the embedded store (LlamaIndex's
``QdrantVectorStore`` at ingest, migrate, repair): a query process never loads it. Near 500 lines for one reason: it is one class implementing one interface, method by method (the
methods qdrant-client's API and LlamaIndex's ``QdrantVectorStore`` call), each a few lines of
conversion (``convert.py``) around the shard (``shard.py``); splitting the class would split the interface.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import QdrantClient, models
from qdrant_client.client_base import QdrantBase
from qdrant_client.http import models as rest

from pipeline.store.edge.convert import _filter, _out_id, _point_id, _prefetch, _query, _record, _scored, _search_params, _vectors, _with_payload, _with_vectors
from pipeline.store.edge.engine import EdgeEngine
from pipeline.store.edge.shard import _Collection, _engine_error, _index_params, _schema_name
from pipeline.store.edge.tuning import DENSE, EMPTY_MARK, _SCHEMA

logger = logging.getLogger(__name__)

class EdgeStore(QdrantBase):
    """qdrant-client's ``QdrantBase`` over ``EdgeEngine`` (one qdrant-edge shard per collection).

    The engine owns the lock, the shards and the lean reads; this class converts qdrant-client's
    models at its boundary and nowhere else. Attributes it lacks (``_get``, ``_update``,
    ``_collections``, ``path`` ...) are the engine's.

    Args:
        engine: an open ``EdgeEngine``, or the folder of shards to open one on (``<store>/edge``).
        keyword_indexes, hnsw_ef: as ``EdgeEngine`` takes them, when a folder is given.
    """

    def __init__(self, engine: EdgeEngine | Path, keyword_indexes: Sequence[str] = (), hnsw_ef: int | None = None) -> None:
        super().__init__()
        self.engine = engine if isinstance(engine, EdgeEngine) else EdgeEngine(Path(engine), keyword_indexes, hnsw_ef)

    def __getattr__(self, name: str) -> Any:
        if name == "engine":  # not set yet: __init__ failed
            raise AttributeError(name)
        return getattr(self.engine, name)

    def close(self, **kwargs: Any) -> None:
        """Flush and close every shard, then release the lock. Safe to call twice."""
        self.engine.close()

    def flush(self) -> None:
        self.engine.flush()

    def optimize(self) -> bool:
        return self.engine.optimize()

    def outdated(self) -> list[str]:
        return self.engine.outdated()

    def upgrade(self) -> list[str]:
        return self.engine.upgrade()

    # -- collections --

    def get_collections(self, **kwargs: Any) -> models.CollectionsResponse:
        return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in sorted(self._collections)])

    def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        return self.engine.collection_exists(collection_name)

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
                params=models.CollectionParams(vectors=_vectors_params(coll.meta), sparse_vectors=_sparse_params(coll.meta)),
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
        """The models as the sidecar records them; the engine builds the shard (``EdgeEngine.create``)."""
        unnamed = isinstance(vectors_config, models.VectorParams)
        dense = {DENSE: vectors_config} if unnamed else dict(vectors_config or {})
        sparse = dict(sparse_vectors_config or {})
        for params in dense.values():
            if params.multivector_config is not None:
                raise NotImplementedError("qdrant-edge backend: multivectors")
        self.engine.create(
            collection_name,
            {
                "unnamed": unnamed,
                "vectors": {name: {"size": p.size, "distance": p.distance.value} for name, p in dense.items()},
                "sparse_vectors": {name: {"modifier": p.modifier.value if p and p.modifier else None} for name, p in sparse.items()},
                "metadata": json.loads(json.dumps(metadata or {}, default=str)),
            },
        )
        return True

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        return self.engine.drop(collection_name)

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
        schema = getattr(schema, "value", schema)
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
        self, collection_name: str, queries: Sequence[tuple[str | None, Any]], where: Any, limit: int, with_payload: Sequence[str] | bool
    ) -> list[list[tuple[str, float, dict[str, Any]]]]:
        """``EdgeEngine.search_hits``: the search fast path, plain tuples."""
        return self.engine.search_hits(collection_name, queries, where, limit, with_payload)

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


def _vectors_params(meta: Mapping[str, Any]) -> models.VectorParams | dict[str, models.VectorParams]:
    dense = {name: models.VectorParams(size=v["size"], distance=models.Distance(v["distance"])) for name, v in meta["vectors"].items()}
    if meta.get("unnamed") and set(dense) == {DENSE}:
        return dense[DENSE]
    return dense


def _sparse_params(meta: Mapping[str, Any]) -> dict[str, models.SparseVectorParams] | None:
    sparse = meta.get("sparse_vectors") or {}
    if not sparse:
        return None
    return {name: models.SparseVectorParams(modifier=models.Modifier(v["modifier"]) if v.get("modifier") else None) for name, v in sparse.items()}


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

    def __init__(self, engine: EdgeEngine | Path, keyword_indexes: Sequence[str] = (), hnsw_ef: int | None = None) -> None:
        super().__init__(location=":memory:")
        self._client.close()
        self._client = EdgeStore(engine, keyword_indexes, hnsw_ef)
        # Not {"path": ...}: AsyncQdrantClient(**init_options) would open local mode inside the edge
        # folder. There is no async edge client, so building one from these options fails loudly.
        self._init_options = {"edge_path": str(self._client.engine.path)}
        self.engine.__dict__.setdefault("_facade", self)  # an engine opened here answers ``qdrant`` with this client

    @property
    def store(self) -> EdgeStore:
        return self._client  # type: ignore[return-value]

    @property
    def engine(self) -> EdgeEngine:
        return self.store.engine

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
        self, name: str, queries: Sequence[tuple[str | None, Any]], where: Any, limit: int, keys: list[str] | bool
    ) -> list[list[tuple[str, float, dict[str, Any]]]]:
        """The search fast path, part of this client's interface (``qdrant.search`` uses it when present):
        hits as plain tuples, without qdrant-client's models (the engine holds the GIL while searching)."""
        return self.engine.search_hits(name, queries, where, limit, keys)
