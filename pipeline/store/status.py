"""What a store holds: collections with point counts and model, parents and documents (``status``)."""

from __future__ import annotations

from typing import Any

from qdrant_client import QdrantClient

from pipeline.config import Settings
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import LedgerReader, ParentStore
from pipeline.store.documents import docstore_path as existing_docstore


def store_status(settings: Settings, client: QdrantClient | None = None, parents: ParentStore | LedgerReader | None = None) -> dict[str, Any]:
    """A JSON-ready summary; opens (and closes) the client and docstore unless they are passed in.

    Raises:
        StoreUnavailable: no docstore at ``settings.store`` (nothing is created to find that out).
    """
    if client is None:  # the docstore, not the folder: an empty folder is no store, and opening it would create one
        existing_docstore(settings.store)
    own_client = client is None
    client = client or qstore.open_client(settings)
    docstore_path = settings.docstore_path
    own_parents = parents is None and docstore_path.exists()
    if own_parents:
        parents = LedgerReader(docstore_path)  # plain sqlite3: status does not import LlamaIndex
    try:
        collections: dict[str, int] = {}
        without_bm25: dict[str, int] = {}
        model: str | None = None
        dim: int | None = None
        for name in qstore.names(settings).values():
            if not qstore.with_retries(client.collection_exists)(name):
                continue
            info = qstore.with_retries(client.get_collection)(name)  # one read: sparse config and metadata
            collections[name] = qstore.count_points(client, name)
            if qstore.SPARSE not in (info.config.params.sparse_vectors or {}):
                without_bm25[name] = collections[name]
            elif missing := qstore.count_points(client, name, qstore.missing_sparse_filter()):
                without_bm25[name] = missing
            meta = info.config.metadata or {}
            model = model or meta.get(qstore.META_MODEL)
            dim = dim or meta.get(qstore.META_DIM)
        ledger = parents.ledger() if parents else {}
        outdated = qstore.outdated_layout(client)
        return {
            "store": str(settings.store.resolve()),
            "backend": qstore.backend(settings).value,  # edge | local | server
            "qdrant": qstore.location(settings),
            "collections": collections,
            "parents": parents.count() if parents else 0,
            # parents with LLM summary/question references (the second ingest phase, `pipeline enrich`)
            "enriched_parents": sum(len(e.enriched) for e in ledger.values()),
            "documents": len(ledger),
            "pending_documents": sorted(d for d, e in ledger.items() if e.pending is not None),
            "failed_documents": parents.failures() if parents else {},
            "embed_model": model,
            "embed_dim": dim,
            # references without a BM25 vector (a store from before hybrid search): dense-only there
            "hybrid": "ready" if not without_bm25 else "dense only until `pipeline check --repair` (or the next ingest) adds BM25 vectors",
            "points_without_bm25": without_bm25,
        } | ({"backend_note": f"written by qdrant-client local mode: {qstore.MIGRATE_HINT}"} if qstore.legacy_local(settings) else {}) | (
            {"layout_note": f"{', '.join(outdated)}: an older engine layout (slower to open, more memory); `pipeline check --repair` rewrites it"}
            if outdated else {}
        )
    finally:
        if own_parents and parents:
            parents.close()
        if own_client:
            client.close()
