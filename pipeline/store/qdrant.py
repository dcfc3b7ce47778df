"""Open the Qdrant client (edge, local mode or server), create the four collections, and check their model.

Each collection records the embedding model and dimension in Qdrant's collection metadata, so any
process can refuse to mix vectors of different models before it writes or searches. Every backend is
reached through ``QdrantClient``; ``open_client`` is the one place that chooses (``backend``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from pipeline.config import QdrantBackend, Settings
from pipeline.errors import ConfigError, ModelMismatch, StoreDamaged, StoreLocked, StoreUnavailable
from pipeline.providers.sparse import VECTOR_NAME as SPARSE
from pipeline.store import layout
from pipeline.store.layout import Collection
from pipeline.store.where import Where, sparse_model, to_models

if TYPE_CHECKING:  # qdrant_client costs ~0.6 s to import: the embedded engine's query path never needs it
    from qdrant_client import QdrantClient, models

logger = logging.getLogger(__name__)

META_MODEL = "embed_model"
META_DIM = "embed_dim"
PAYLOAD_INDEXES = (layout.DOC_ID, layout.KIND, layout.PARENT_ID)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, StoreDamaged):  # damaged files stay damaged: say so at once, not "unreachable"
        return False
    text = f"{type(exc).__name__} {exc}".lower()
    return any(s in text for s in ("connect", "timeout", "timed out", "unavailable", "refused", "reset"))


def with_retries(fn: Any, attempts: int = 4) -> Any:
    """Retry transient Qdrant failures with exponential backoff, then raise ``StoreUnavailable``."""
    wrapped = retry(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry=retry_if_exception(_transient),
        reraise=True,
    )(fn)

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return wrapped(*args, **kwargs)
        except Exception as exc:
            if _transient(exc):
                raise StoreUnavailable(f"Qdrant unreachable after {attempts} attempts: {type(exc).__name__}: {exc}") from exc
            raise

    return call


def has_local_collections(settings: Settings) -> bool:
    """True if ``<store>/qdrant`` holds collections written by qdrant-client's local mode."""
    folder = settings.qdrant_path / "collection"
    return folder.is_dir() and any(p.is_dir() for p in folder.iterdir())


def backend(settings: Settings) -> QdrantBackend:
    """The backend this store opens with.

    ``QDRANT_URL`` (``qdrant.url``) selects the server. Otherwise ``qdrant.backend``, except that a
    store written by local mode (collections in ``<store>/qdrant``, no ``<store>/edge``) opens in
    local mode until ``pipeline migrate --to edge``, so its data never seems to vanish.

    Raises:
        ConfigError: ``qdrant.backend=server`` without a URL.
    """
    cfg = settings.qdrant
    if cfg.url:
        return QdrantBackend.SERVER
    if cfg.backend is QdrantBackend.SERVER:
        raise ConfigError("qdrant.backend=server needs a URL: set QDRANT_URL (or PIPELINE_QDRANT__URL)")
    if cfg.backend is QdrantBackend.LOCAL:
        return QdrantBackend.LOCAL
    if not settings.edge_path.exists() and has_local_collections(settings):
        return QdrantBackend.LOCAL
    return QdrantBackend.EDGE


def legacy_local(settings: Settings) -> bool:
    """True if edge is configured but the store is a local-mode one (``migrate --to edge`` moves it)."""
    return settings.qdrant.backend is QdrantBackend.EDGE and not settings.qdrant.url and backend(settings) is QdrantBackend.LOCAL


MIGRATE_HINT = "`pipeline migrate --to edge` moves it to the embedded engine (faster open and search)"


def location(settings: Settings) -> str:
    """Where the collections are, for ``status`` and ``/status``: the URL or ``<backend>:<folder>``."""
    b = backend(settings)
    if b is QdrantBackend.SERVER:
        return str(settings.qdrant.url)
    folder = settings.edge_path if b is QdrantBackend.EDGE else settings.qdrant_path
    return f"{'edge' if b is QdrantBackend.EDGE else 'embedded'}:{folder.resolve()}"


def open_client(settings: Settings) -> QdrantClient:
    """A client for ``QDRANT_URL`` if set, else the embedded engine at ``<store>/edge`` (or local mode
    at ``<store>/qdrant``, for a store written by it or with ``qdrant.backend=local``).

    Raises:
        StoreLocked: another process has the embedded store open.
        StoreUnavailable: the server does not answer.
    """
    cfg = settings.qdrant
    chosen = backend(settings)
    if chosen is QdrantBackend.SERVER:
        from qdrant_client import QdrantClient

        api_key = cfg.api_key.get_secret_value() if cfg.api_key else None
        client = QdrantClient(url=cfg.url, api_key=api_key, timeout=int(cfg.timeout), check_compatibility=False)
        with_retries(client.get_collections)()
        return client
    if chosen is QdrantBackend.EDGE:
        from pipeline.store.edge import EdgeEngine  # the only importer of qdrant_edge

        return EdgeEngine(settings.edge_path, keyword_indexes=PAYLOAD_INDEXES, hnsw_ef=cfg.hnsw_ef, facade=_edge_facade)  # type: ignore[return-value]
    if legacy_local(settings):
        logger.info("store %s was written by qdrant-client local mode: opening it in local mode; %s", settings.store, MIGRATE_HINT)
    path = settings.qdrant_path
    path.mkdir(parents=True, exist_ok=True)
    from qdrant_client import QdrantClient

    from pipeline.store.local_mode import SerializedClient

    try:
        return SerializedClient(QdrantClient(path=str(path)))  # type: ignore[return-value]
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise StoreLocked.open_elsewhere(f"embedded Qdrant at {path}") from exc
        raise StoreUnavailable(f"cannot open embedded Qdrant at {path}: {exc}") from exc


def _edge_facade(engine: Any) -> QdrantClient:
    """qdrant-client's API over an open embedded engine (built when a caller first needs it)."""
    from pipeline.store.edge.client import EdgeClient

    return EdgeClient(engine)


@runtime_checkable
class MaintainedFiles(Protocol):
    """A backend whose files this process maintains (the embedded engine): it flushes before each
    ledger commit, optimizes after bulk writes, and rewrites an outdated on-disk layout. qdrant-client's
    local mode and a server have none of these (they commit per write, or own their files)."""

    def flush(self) -> None: ...
    def optimize(self) -> None: ...
    def outdated(self) -> list[str]: ...
    def upgrade(self) -> list[str]: ...
    def search_hits(
        self, name: str, queries: Sequence[tuple[str | None, Any]], where: Any, limit: int, keys: list[str] | bool
    ) -> list[list[tuple[str, float, dict[str, Any]]]]: ...


def _edge_client(client: Any) -> MaintainedFiles | None:
    """``client`` if this process maintains its files, else None (asked of the object, not of sys.modules)."""
    return client if isinstance(client, MaintainedFiles) else None


@runtime_checkable
class LeanReads(Protocol):
    """A backend that answers a query process's reads with the store's plain types (``store.where``)
    and no qdrant-client: the embedded engine (``store/edge/engine.py``)."""

    def collection_meta(self, name: str) -> dict[str, Any] | None: ...
    def rows(self, name: str, ids: Sequence[Any], keys: Sequence[str] | bool) -> list[tuple[str, dict[str, Any]]]: ...
    def count_where(self, name: str, where: Any = None) -> int: ...
    def scroll_rows(self, name: str, keys: Sequence[str] | bool, where: Any = None) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def delete_ids(self, name: str, ids: Sequence[Any]) -> None: ...


def _lean(client: Any) -> LeanReads | None:
    """The embedded engine behind ``client`` (itself, or an ``EdgeClient``'s ``engine``), else None."""
    if isinstance(client, LeanReads):
        return client
    engine = getattr(client, "engine", None)
    return engine if isinstance(engine, LeanReads) else None


def qdrant_api(client: Any) -> QdrantClient:
    """``client`` as a real ``QdrantClient`` (for LlamaIndex): the embedded engine's facade, built on demand."""
    return client.qdrant if isinstance(client, LeanReads) else client  # type: ignore[attr-defined]


def flush(client: Any) -> None:
    """Make the writes so far durable before a commit point (the ledger row) is written.

    A no-op for local mode (it commits per write) and a server (it owns its durability).
    """
    edge = _edge_client(client)
    if edge is not None:
        edge.flush()


def optimize(client: Any) -> None:
    """After a bulk ingest: let the edge engine merge segments and build its HNSW indexes."""
    edge = _edge_client(client)
    if edge is not None:
        edge.optimize()


def outdated_layout(client: Any) -> list[str]:
    """Edge collections in an older on-disk layout (slower to open, float search); [] elsewhere."""
    edge = _edge_client(client)
    return edge.outdated() if edge is not None else []


def upgrade_layout(client: Any) -> list[str]:
    """Rewrite the ``outdated_layout`` collections in the current one (``check --repair``)."""
    edge = _edge_client(client)
    return edge.upgrade() if edge is not None else []


def names(settings: Settings) -> dict[Collection, str]:
    return {c: layout.collection_name(settings.qdrant.prefix, c) for c in Collection}


def check_model(client: QdrantClient, name: str, model: str, dim: int) -> bool:
    """True if the collection exists and matches; False if it does not exist.

    Raises:
        ModelMismatch: it exists with another model or dimension.
    """
    meta, size = _meta_and_size(client, name)
    if meta is None:
        return False
    stored_model = meta.get(META_MODEL, "unknown model")
    stored_dim = meta.get(META_DIM, size)
    if stored_model != model or stored_dim != dim:
        raise ModelMismatch(name, f"{stored_model}/{stored_dim}", f"{model}/{dim}")
    return True


def _meta_and_size(client: Any, name: str) -> tuple[dict[str, Any] | None, int | None]:
    """(collection metadata, the unnamed dense vector's size) or (None, None) if there is no collection."""
    engine = _lean(client)
    if engine is not None:
        sidecar = engine.collection_meta(name)
        if sidecar is None:
            return None, None
        vectors = sidecar.get("vectors") or {}
        size = vectors[""]["size"] if sidecar.get("unnamed") and "" in vectors else None
        return dict(sidecar.get("metadata") or {}), size
    if not with_retries(client.collection_exists)(name):
        return None, None
    from qdrant_client import models

    info = with_retries(client.get_collection)(name)
    vectors = info.config.params.vectors
    return dict(info.config.metadata or {}), vectors.size if isinstance(vectors, models.VectorParams) else None


def metadata(client: Any, name: str) -> dict[str, Any] | None:
    """The collection's metadata (model and dimension), or None if there is no such collection."""
    return _meta_and_size(client, name)[0]


def ensure_collections(client: QdrantClient, settings: Settings, model: str, dim: int) -> dict[Collection, str]:
    """Create missing collections (cosine, recorded model/dim, payload indexes); check existing ones."""
    from qdrant_client import models

    out = names(settings)
    for name in out.values():
        if check_model(client, name, model, dim):
            continue
        # The dense vector stays unnamed (as in every store written before hybrid search), the BM25
        # vector is named; Qdrant applies IDF from its live counts (pipeline/providers/sparse.py).
        with_retries(client.create_collection)(
            name,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={META_MODEL: model, META_DIM: dim},
        )
        if backend(settings) is QdrantBackend.SERVER:  # edge makes them at creation (``open_client``); local mode has none
            for key in PAYLOAD_INDEXES:
                with_retries(client.create_payload_index)(name, key, models.PayloadSchemaType.KEYWORD)
        logger.info("created collection %s (%s/%d)", name, model, dim)
    return out


def stored_model(client: QdrantClient, settings: Settings) -> str | None:
    """The embedding model recorded in the store's collections, or None for a new store."""
    for name in names(settings).values():
        meta, _ = _meta_and_size(client, name)
        if meta and meta.get(META_MODEL):
            return str(meta[META_MODEL])
    return None


def has_sparse(client: QdrantClient, name: str) -> bool:
    """True if the collection has the BM25 vector (collections made before hybrid search do not)."""
    engine = _lean(client)
    if engine is not None:
        sidecar = engine.collection_meta(name)
        return sidecar is not None and SPARSE in (sidecar.get("sparse_vectors") or {})
    if not with_retries(client.collection_exists)(name):
        return False
    sparse = with_retries(client.get_collection)(name).config.params.sparse_vectors or {}
    return SPARSE in sparse


def missing_sparse_filter() -> Where:
    """Points without a BM25 vector: what a backfill still has to do."""
    return Where(without_vector=SPARSE)


def vector_store(client: QdrantClient, name: str, hybrid: bool, batch_size: int = 256) -> Any:
    """LlamaIndex's ``QdrantVectorStore`` over one collection; with ``hybrid``, BM25 vectors are
    written beside the dense ones and ``VectorStoreQueryMode.SPARSE`` queries work.

    Our sparse functions are passed every time: without them the integration would import fastembed,
    which downloads a model (and fails offline).
    """
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from pipeline.providers import sparse

    client = qdrant_api(client)
    if not hybrid:
        return QdrantVectorStore(collection_name=name, client=client, batch_size=batch_size)
    return QdrantVectorStore(
        collection_name=name,
        client=client,
        batch_size=batch_size,
        enable_hybrid=True,
        sparse_doc_fn=sparse.doc_vectors,
        sparse_query_fn=sparse.query_vectors,
        sparse_vector_name=SPARSE,
    )


def search(
    client: QdrantClient, name: str, queries: Sequence[tuple[str | None, Any]], where: Where | models.Filter | None, limit: int, keys: list[str] | bool
) -> list[list[tuple[str, float, dict[str, Any]]]]:
    """(point id, score, payload keys, or none with ``keys=False``) of the best ``limit`` points of one
    collection for each query, best first.

    A query is (vector name, None for the dense vector; the query vector, dense or sparse), all in one
    call; the vector is a list or ``where.Sparse``. The edge engine answers without qdrant-client's models (``EdgeEngine.search_hits``: it holds
    the GIL while searching, so Python per hit is throughput lost; ``MaintainedFiles.search_hits``); elsewhere ``query_points`` for
    one query, ``query_batch_points`` for more.
    """
    edge = _edge_client(client)
    if edge is not None:
        return edge.search_hits(name, queries, where, limit, keys)
    from qdrant_client import models

    flt = to_models(where)
    queries = [(using, sparse_model(vector)) for using, vector in queries]
    if len(queries) == 1:
        using, vector = queries[0]
        responses = [client.query_points(name, query=vector, using=using, query_filter=flt, limit=limit, with_payload=keys)]
    else:
        requests = [models.QueryRequest(query=vector, using=using, filter=flt, limit=limit, with_payload=keys) for using, vector in queries]
        responses = client.query_batch_points(name, requests=requests)
    return [[(str(p.id), float(p.score or 0.0), p.payload or {}) for p in r.points] for r in responses]


def payloads(client: QdrantClient, name: str, ids: Sequence[str], keys: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(id, the asked payload keys) of the points among ``ids`` that exist."""
    engine = _lean(client)
    if engine is not None:
        return engine.rows(name, ids, keys)
    return [(str(r.id), dict(r.payload or {})) for r in with_retries(client.retrieve)(name, ids=list(ids), with_payload=keys, with_vectors=False)]


def count_points(client: QdrantClient, name: str, flt: Where | models.Filter | None = None) -> int:
    engine = _lean(client)
    if engine is not None:
        return engine.count_where(name, flt)
    if not with_retries(client.collection_exists)(name):
        return 0
    return with_retries(client.count)(name, count_filter=to_models(flt), exact=True).count


def scroll_payloads(client: QdrantClient, name: str, keys: list[str], flt: Where | models.Filter | None = None) -> Iterator[tuple[str, dict]]:
    """Every point's id and the asked payload keys, in pages (used by sync and ``check``)."""
    engine = _lean(client)
    if engine is not None:
        yield from engine.scroll_rows(name, keys, flt)
        return
    flt = to_models(flt)
    offset = None
    while True:
        points, offset = with_retries(client.scroll)(
            name, scroll_filter=flt, limit=1024, offset=offset, with_payload=keys, with_vectors=False
        )
        for p in points:
            yield str(p.id), dict(p.payload or {})
        if offset is None:
            return


def delete_points(client: QdrantClient, name: str, ids: list[str]) -> None:
    engine = _lean(client)
    if engine is not None:
        for start in range(0, len(ids), 1024):
            engine.delete_ids(name, ids[start : start + 1024])
        return
    from qdrant_client import models

    for start in range(0, len(ids), 1024):
        with_retries(client.delete)(name, points_selector=models.PointIdsList(points=ids[start : start + 1024]), wait=True)
