"""HTTP routes for documents: ``GET /documents``, ``GET /documents/{name}``, ``DELETE /documents/{name}``,
and the name resolution /retrieve and /query use for ``filters.doc`` / ``filters.doc_id``.

A removal runs in a worker thread on the service's own client, under the store's ingest lock: it waits
for nothing and fails with 503 (``StoreLocked``) while an ingest job is writing, so the embedded store
never has two writers. Each removal is logged as one audit line (name, doc_id, what happened, request id).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from pipeline.errors import UnknownDocument
from pipeline.service.deps import ServiceState, get_state
from pipeline.service.middleware import request_id_var
from pipeline.service.schemas import API_RESPONSES, ErrorBody
from pipeline.store.documents import Catalog, DocumentDetail, DocumentInfo, Removed, docstore_path
from pipeline.store.state import fleet

logger = logging.getLogger("pipeline.service.audit")

StateDep = Annotated[ServiceState, Depends(get_state)]
Name = Annotated[str, PathParam(max_length=4096, description="The document's name as GET /documents lists it (or its doc_id)")]
NOT_FOUND = {
    404: {"model": ErrorBody, "description": "No document has this name; the detail lists the closest names"},
    422: {"model": ErrorBody, "description": "The name cannot be used (not valid text, or ambiguous: the detail lists the candidates)"},
}

router = APIRouter(tags=["documents"], responses=API_RESPONSES)


class CatalogCache:
    """The catalog, read again only when the docstore file (or its WAL) changed: /retrieve names its
    sources on every call, and reading a large ledger per query would cost more than the search."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[int, ...] | None = None
        self._catalog: Catalog | None = None

    def get(self, state: ServiceState) -> Catalog:
        if fleet(state.settings):  # other replicas and workers write the database: re-read at most once a second
            key: tuple[int, ...] = (int(time.monotonic()),)
        else:
            path = docstore_path(state.settings.store)
            key = tuple(int(p.stat().st_mtime_ns) if p.exists() else 0 for p in (path, path.with_name(path.name + "-wal")))
        with self._lock:
            if self._catalog is None or key != self._key:
                self._catalog, self._key = Catalog.read(state.settings), key
            return self._catalog

    def clear(self) -> None:
        with self._lock:
            self._catalog = None


def catalog_cache(state: ServiceState) -> CatalogCache:
    cache = getattr(state, "_catalog_cache", None)
    if cache is None:
        cache = state._catalog_cache = CatalogCache()  # type: ignore[attr-defined]
    return cache


def scoped_filters(state: ServiceState, filters: dict[str, Any] | None) -> tuple[Catalog | None, dict[str, Any] | None]:
    """``filters`` with ``doc`` (a name) or ``doc_id`` replaced by the doc_id holding that document's content.

    Raises:
        UnknownDocument: the name or id matches no document (422 with the closest names), never an empty result.
    """
    try:
        catalog = catalog_cache(state).get(state)
    except Exception:
        catalog = None  # nothing ingested yet: the engine says so
    if not filters:
        return catalog, filters
    out = dict(filters)
    wanted = out.pop("doc", None) or out.get("doc_id")
    if wanted is not None:
        if catalog is None:
            raise UnknownDocument(f"no document named {wanted!r}: the store holds no documents", wanted)
        out["doc_id"] = catalog.owner(catalog.resolve(wanted))
    return catalog, out


def not_found(exc: UnknownDocument) -> HTTPException:
    """422 for a name several documents answer to (the request cannot be used as it is), 404 for one nobody does."""
    return HTTPException(status_code=422 if exc.ambiguous else 404, detail=str(exc))


def _resolve(state: ServiceState, name: str) -> tuple[Catalog, str]:
    catalog = Catalog.read(state.settings)
    try:
        return catalog, catalog.resolve(name)
    except UnknownDocument as exc:
        raise not_found(exc) from exc


@router.get("/documents", response_model=list[DocumentInfo], summary="Every ingested document, by name")
async def list_documents(state: StateDep) -> list[DocumentInfo]:
    return await anyio.to_thread.run_sync(lambda: Catalog.read(state.settings).documents())


@router.get("/documents/{name:path}", response_model=DocumentDetail, summary="One document with its parents, summaries and questions", responses={**NOT_FOUND})
async def get_document(name: Name, state: StateDep) -> DocumentDetail:
    def read() -> DocumentDetail:
        from pipeline.store import qdrant as qstore
        from pipeline.store.documents import document_detail
        from pipeline.store.state import open_parents

        catalog, doc_id = _resolve(state, name)
        parents = open_parents(state.settings)
        try:
            return document_detail(catalog, doc_id, parents, state.client(), qstore.names(state.settings))
        finally:
            parents.close()

    return await anyio.to_thread.run_sync(read)


@router.delete(
    "/documents/{name:path}",
    response_model=Removed,
    summary="Remove a document: its parents and every reference (content another name shares stays)",
    description="Crash-safe (the ledger protocol); 503 while an ingest job writes to the store. The file on the server is untouched.",
    responses={**NOT_FOUND, 503: {"model": ErrorBody, "description": "An ingest job holds the store; retry when it is done"}},
)
async def delete_document(name: Name, state: StateDep) -> Removed:
    from pipeline.ingest.remove import remove_names

    def remove() -> Removed:
        _, doc_id = _resolve(state, name)
        done = remove_names(state.settings, [doc_id], client=state.client(), lock_timeout=state.settings.service.ingest_lock_timeout)
        catalog_cache(state).clear()
        return done[0]

    removed = await anyio.to_thread.run_sync(remove)
    logger.info(
        "document removed: %s", removed.name, extra={"doc_id": removed.doc_id, "content": removed.content, "request_id": request_id_var.get("")}
    )
    return removed
