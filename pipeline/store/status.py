"""What a store holds: collections with point counts and model, parents and documents (``status``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import LedgerReader, ParentStore
from pipeline.store.documents import require_store
from pipeline.store.state import KVLedgerReader, fleet, has_docstore, open_ledger_reader
from pipeline.store.state import namespace as state_namespace

if TYPE_CHECKING:  # status reads the embedded engine without qdrant-client (~0.6 s to import)
    from qdrant_client import QdrantClient


def store_status(settings: Settings, client: QdrantClient | None = None, parents: ParentStore | LedgerReader | KVLedgerReader | None = None) -> dict[str, Any]:
    """A JSON-ready summary; opens (and closes) the client and docstore unless they are passed in.

    Raises:
        StoreUnavailable: no docstore at ``settings.store`` (nothing is created to find that out).
    """
    if client is None:  # the docstore, not the folder: an empty folder is no store, and opening it would create one
        require_store(settings)
    own_client = client is None
    client = client or qstore.open_client(settings)
    own_parents = parents is None and has_docstore(settings)
    if own_parents:
        parents = open_ledger_reader(settings)  # plain sqlite3 (or the database): status does not import LlamaIndex
    try:
        collections: dict[str, int] = {}
        without_bm25: dict[str, int] = {}
        model: str | None = None
        dim: int | None = None
        for name in qstore.names(settings).values():
            meta = qstore.metadata(client, name)
            if meta is None:
                continue
            collections[name] = qstore.count_points(client, name)
            if not qstore.has_sparse(client, name):
                without_bm25[name] = collections[name]
            elif missing := qstore.count_points(client, name, qstore.missing_sparse_filter()):
                without_bm25[name] = missing
            model = model or meta.get(qstore.META_MODEL)
            dim = dim or meta.get(qstore.META_DIM)
        ledger = parents.ledger() if parents else {}
        outdated = qstore.outdated_layout(client)
        return {
            "store": str(settings.store.resolve()),
            "backend": qstore.backend(settings).value,  # edge | local | server
            "qdrant": qstore.location(settings),
            **({"database": "postgresql", "namespace": state_namespace(settings)} if fleet(settings) else {}),  # never the URL: it may hold a password
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
