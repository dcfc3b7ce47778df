"""Bring a store written by an older layout up to the current one, in place and crash-safe.

Layout 1 (before the ``parents`` collection existed) kept each parent's self-reference in
``children`` among the chunks, so mode ``base`` needed a ``kind`` filter that embedded Qdrant
evaluates point by point. Migrating moves those points, vectors included, so nothing is re-embedded
and no source file is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline.models import RefKind
from pipeline.store import layout
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import ParentStore
from pipeline.store.layout import Collection
from pipeline.store.where import to_models

if TYPE_CHECKING:  # qdrant-client (~0.6 s to import) only where points are moved: `needs_migration` runs on every ingest
    from qdrant_client import QdrantClient, models

logger = logging.getLogger(__name__)

BATCH = 256


def _parent_refs_filter() -> models.Filter:
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key=layout.KIND, match=models.MatchValue(value=RefKind.PARENT.value))])


def _legacy(entry: dict[str, Any]) -> bool:
    """A layout-1 ledger entry: its refs have no ``parents`` list (layout 2 always writes one).

    Only the committed part and a phase-1 intent tell: an enrichment's intent listed its own two
    collections only, and reading it as layout 1 emptied the document's parent references (which
    ``check --repair`` then deleted as orphans).
    """
    pending = entry.get("pending") or {}
    parts = [entry] + ([pending] if not pending.get("enrich") and pending.get("op", "write") == "write" else [])
    return any(part.get("refs") and Collection.PARENTS.value not in part["refs"] for part in parts)


def needs_migration(parents: ParentStore) -> bool:
    """Cheap (reads the ledger only), so every ingest can ask before opening any collection."""
    return any(_legacy(entry) for entry in parents.raw_ledger().values())


def migrate_parent_refs(client: QdrantClient, collections: dict[Collection, str], parents: ParentStore) -> int:
    """Move parent self-references from ``children`` to ``parents``; returns how many points moved.

    Order: copy the points, delete the originals, then rewrite the ledger entries (the self-reference
    id is computed from the parent id, so this last step needs no Qdrant state). Each step is
    idempotent and the ledger is rewritten last, so a run killed anywhere is finished by the next;
    meanwhile queries see a self-reference once or twice (same parent, same score), never zero times.
    Call with the ingest lock held.
    """
    if not needs_migration(parents):
        return 0
    from qdrant_client import models

    src, dst = collections[Collection.CHILDREN], collections[Collection.PARENTS]
    if not qstore.with_retries(client.collection_exists)(dst):  # `check --repair` knows no model: copy src's
        info = qstore.with_retries(client.get_collection)(src)
        qstore.with_retries(client.create_collection)(
            dst,
            vectors_config=info.config.params.vectors,
            sparse_vectors_config=info.config.params.sparse_vectors,  # BM25, where src has it
            metadata=info.config.metadata,
        )
    moved: list[str] = []
    offset = None
    while True:
        points, offset = qstore.with_retries(client.scroll)(
            src, scroll_filter=_parent_refs_filter(), limit=BATCH, offset=offset, with_payload=True, with_vectors=True
        )
        if points:
            qstore.with_retries(client.upsert)(
                dst, points=[models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points], wait=True
            )
            moved.extend(str(p.id) for p in points)
        if offset is None:
            break
    qstore.delete_points(client, src, moved)
    for doc_id, entry in parents.raw_ledger().items():
        if not _legacy(entry):
            continue
        pending = entry.get("pending") or {}
        for part in (entry, pending) if not pending.get("enrich") else (entry,):
            refs = part.get("refs")
            if refs is None:
                continue
            self_refs = {layout.ref_id_for(p, RefKind.PARENT, 0) for p in part.get("parents", [])}
            children = refs.get(Collection.CHILDREN.value, [])
            refs[Collection.CHILDREN.value] = [i for i in children if i not in self_refs]
            refs[Collection.PARENTS.value] = sorted(i for i in children if i in self_refs)
        parents.put_ledger(doc_id, entry)
    logger.info("store layout migrated: %d parent self-references moved from %s to %s", len(moved), src, dst)
    return len(moved)


def needs_sparse(client: QdrantClient, collections: dict[Collection, str]) -> list[str]:
    """Collections that exist without BM25 vectors, or with points still missing one."""
    out = []
    for name in collections.values():
        if not qstore.with_retries(client.collection_exists)(name):
            continue
        if not qstore.has_sparse(client, name) or qstore.count_points(client, name, qstore.missing_sparse_filter()):
            out.append(name)
    return out


def add_sparse_vectors(
    client: QdrantClient, collections: dict[Collection, str], progress: Callable[[str, int, int], None] | None = None
) -> int:
    """Give every point of a store written before hybrid search its BM25 vector; returns points updated.

    Nothing is re-embedded and no source file is needed: the text is in each point's payload (the
    LlamaIndex node), and the BM25 vector is a pure function of it (``providers/sparse.py``), the same
    text ``QdrantVectorStore`` gives the sparse function at ingest (``MetadataMode.EMBED``). The
    sparse vector is added beside the unnamed dense one (Qdrant's create-vector-name: embedded mode,
    or a server ≥ 1.18), then points without one are updated in pages. Killed halfway, the next run
    finds the rest by the same ``has_vector`` filter. Call with the ingest lock held.
    """
    from llama_index.core.schema import MetadataMode
    from llama_index.core.vector_stores.utils import metadata_dict_to_node
    from qdrant_client import models
    from qdrant_client.http.exceptions import UnexpectedResponse

    from pipeline.errors import StoreUnavailable
    from pipeline.providers import sparse

    updated = 0
    for name in needs_sparse(client, collections):
        if not qstore.has_sparse(client, name):
            try:
                qstore.with_retries(client.create_vector_name)(
                    name, qstore.SPARSE, models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF))
                )
            except UnexpectedResponse as exc:  # an older server answers 404 for the route
                raise StoreUnavailable(
                    f"cannot add BM25 vectors to collection {name} ({type(exc).__name__}: {exc}); a Qdrant server needs "
                    "version 1.18 or later for this. The store keeps answering with dense search (retrieval.hybrid=false)"
                ) from exc
        total = qstore.count_points(client, name, qstore.missing_sparse_filter())
        done = 0
        while True:
            # Always the first page of what is left: updated points leave the filter.
            points, _ = qstore.with_retries(client.scroll)(
                name, scroll_filter=to_models(qstore.missing_sparse_filter()), limit=BATCH, with_payload=True, with_vectors=False
            )
            if not points:
                break
            batch = []
            for p in points:
                text = metadata_dict_to_node(dict(p.payload or {})).get_content(metadata_mode=MetadataMode.EMBED)
                indices, values = sparse.doc_vector(text)
                batch.append(models.PointVectors(id=p.id, vector={qstore.SPARSE: models.SparseVector(indices=indices, values=values)}))
            qstore.with_retries(client.update_vectors)(name, points=batch, wait=True)
            done += len(batch)
            updated += len(batch)
            if progress is not None:
                progress(name, done, total)
        logger.info("added BM25 vectors to %d points of %s", done, name)
    return updated
