"""Open what ingestion wrote (Qdrant collections + disk docstore) without embedding any corpus text."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.errors import StoreUnavailable
from pipeline.models import RefKind
from pipeline.providers.encoder import embed_dim
from pipeline.store import layout
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import ParentStore
from pipeline.store.state import has_docstore, open_parents
from pipeline.store.layout import Collection

if TYPE_CHECKING:  # LlamaIndex only for ``Rehydrated.indexes`` (stock LlamaIndex retrievers), built on demand
    from llama_index.core import VectorStoreIndex

logger = logging.getLogger(__name__)


@dataclass
class Rehydrated:
    """The existing collections (by name, searched with ``client``) and the lazily read parent store."""

    client: Any  # the store's client: ``store.qdrant.open_client``
    parents: ParentStore
    names: dict[Collection, str] = field(default_factory=dict)
    sparse: set[Collection] = field(default_factory=set)  # collections holding BM25 vectors
    embedder: Any = None  # the query embedder (an ``OnnxEncoder`` or a LlamaIndex embedding)
    _indexes: dict[Collection, VectorStoreIndex] | None = field(default=None, init=False, repr=False)
    _self_refs: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # read so far
    _self_refs_built: bool = field(default=False, init=False, repr=False)  # every parent of the docstore hashed in
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def parents_of_self_refs(self, ref_ids: Sequence[str]) -> dict[str, str]:
        """The parent id of each given point id of the parents collection, without reading their payloads.

        A parent's self-reference has the id ``layout.ref_id_for(parent, PARENT, 0)``; the docstore
        keeps the inverse (``docstore.SELF_REFS``, written with each parent), read here for the ids not
        seen before and kept. In a store written before it, every parent id of the docstore is hashed
        once instead (~6 µs a parent); an id neither knows (a point whose id was made otherwise) is
        read from Qdrant once and kept; one that is gone is left out. Why: the engine decodes a point's whole payload, here the parent's
        ~5 KB node JSON, to return two keys: for the dense + BM25 search of the parents collection that
        was 1.32 of 1.36 ms at 30 hits, 3.1 of 3.9 ms at 100 (41-paper store), time the service's
        requests queue for (docs/service.md, concurrency).
        """
        with self._lock:
            known = self._self_refs
        out = {rid: known[rid] for rid in ref_ids if rid in known}
        missing = [rid for rid in dict.fromkeys(ref_ids) if rid not in out]
        if missing:  # written with their parents since SELF_REFS: one indexed query
            found = self.parents.parents_of_self_refs(missing)
            out.update(found)
            with self._lock:
                known.update(found)
            missing = [rid for rid in missing if rid not in found]
        if missing and not self._self_refs_built:  # a store written before SELF_REFS: every parent hashed once
            with self._lock:
                if not self._self_refs_built:
                    known.update({layout.ref_id_for(pid, RefKind.PARENT, 0): pid for pid in self.parents.ids()})
                    self._self_refs_built = True
            out.update({rid: known[rid] for rid in missing if rid in known})
            missing = [rid for rid in missing if rid not in out]
        if missing:
            for rid, payload in qstore.payloads(self.client, self.names[Collection.PARENTS], missing, [layout.PARENT_ID]):
                if layout.PARENT_ID in payload:
                    out[rid] = known[rid] = payload[layout.PARENT_ID]
        return out

    @property
    def indexes(self) -> dict[Collection, VectorStoreIndex]:
        """LlamaIndex ``VectorStoreIndex`` over each collection, built on first use.

        Retrieval queries Qdrant directly (``pipeline/retrieve/parents.py`` says why); these are for
        callers that want stock LlamaIndex retrievers over the same collections.
        """
        from llama_index.core import VectorStoreIndex

        from pipeline.providers.embeddings import OnnxEmbedding
        from pipeline.providers.encoder import OnnxEncoder

        embed_model = OnnxEmbedding.wrap(self.embedder) if isinstance(self.embedder, OnnxEncoder) else self.embedder
        with self._lock:
            if self._indexes is None:
                self._indexes = {
                    coll: VectorStoreIndex.from_vector_store(qstore.vector_store(self.client, name, coll in self.sparse), embed_model=embed_model)
                    for coll, name in self.names.items()
                }
        return self._indexes

    def close(self) -> None:
        self.parents.close()
        self.client.close()


def rehydrate(settings: Settings, embedder: Any, client: Any = None) -> Rehydrated:
    """Open the store for queries.

    Raises:
        StoreUnavailable: nothing has been ingested into this store yet.
        ModelMismatch: the collections were built with another embedding model or dimension.
        StoreLocked: embedded Qdrant is open in another process.
    """
    names = qstore.names(settings)
    if not has_docstore(settings):  # say so before opening (and creating) anything (fleet mode: no rows in the database)
        raise StoreUnavailable(
            f"no ingested data in {settings.store} (no docstore.sqlite): run `python -m pipeline ingest PATH` first"
        )
    own_client = client is None
    client = client or qstore.open_client(settings)
    dim = embed_dim(embedder)
    present = {c: n for c, n in names.items() if qstore.check_model(client, n, embedder.model_name, dim)}
    if not present:
        if own_client:
            client.close()
        raise StoreUnavailable(
            f"no ingested data in {settings.store} (collections {', '.join(names.values())}): run `python -m pipeline ingest PATH` first"
        )
    parents = open_parents(settings)  # SQLite file, or the database (store/state.py)
    from pipeline.store.migrate import needs_migration

    if needs_migration(parents):
        parents.close()
        if own_client:
            client.close()
        raise StoreUnavailable(
            f"{settings.store} was written by an older version (parent self-references inside the children "
            "collection): run `python -m pipeline check --repair` or any ingest once to migrate it (no re-embedding)"
        )
    out = Rehydrated(client=client, parents=parents, names=present, embedder=embedder)
    out.sparse = {coll for coll, name in present.items() if qstore.has_sparse(client, name)}
    if len(out.sparse) < len(present):
        logger.info(
            "%s: %d of %d collections have no BM25 vectors (written before hybrid search): dense search only there; "
            "`pipeline check --repair` adds them without re-embedding",
            settings.store, len(present) - len(out.sparse), len(present),
        )
    return out
