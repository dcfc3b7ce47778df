"""Recursive retrieval: search references, follow ``index_id`` to the parent, group, score, cut to k.

This does what LlamaIndex's ``RecursiveRetriever`` does for IndexNodes, but reads parents lazily from
the disk docstore (``RecursiveRetriever`` wants every node in a ``node_dict`` in memory) and counts
``top_k`` in distinct parents rather than in references.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

from pipeline.config import Fusion
from pipeline.errors import InvalidQuery
from pipeline.models import MatchedRef, Mode, RefKind
from pipeline.retrieve.fuse import fuse, rank_parents
from pipeline.retrieve.modes import Search, searches_for
from pipeline.retrieve.rehydrate import Rehydrated
from pipeline.store import layout

logger = logging.getLogger(__name__)

MATCHED = "matched_refs"  # metadata key on returned parents: list of MatchedRef dicts
FILTERABLE = {layout.DOC_ID, layout.FILE_NAME, layout.PARENT_ID}
KINDS_IN = {c: {k for k, coll in layout.KIND_TO_COLLECTION.items() if coll is c} for c in layout.Collection}


class ParentRetriever(BaseRetriever):
    """Return the top-k distinct parents for a query in one mode.

    A parent's score is its best reference's cosine score (``Fusion.MAX``; the scores of some kinds,
    by default summaries and questions, are first multiplied by ``weights``) or the reciprocal-rank
    fusion of its per-collection ranks (``Fusion.RRF``). ``top_k × overfetch`` references are read
    from each collection so that k distinct parents survive grouping.

    Example:
        retriever = ParentRetriever(store, embedder, Mode.CHUNK, top_k=3)
        parents = retriever.retrieve("How did AlexNet use GPUs?")
    """

    def __init__(
        self,
        store: Rehydrated,
        embedder: BaseEmbedding,
        mode: Mode,
        top_k: int,
        overfetch: int = 10,
        fusion: Fusion = Fusion.MAX,
        filters: Mapping[str, Any] | None = None,
        weights: Mapping[RefKind, float] | None = None,
    ) -> None:
        if top_k < 1:
            raise InvalidQuery(f"top_k must be at least 1, got {top_k}")
        for key in filters or {}:
            if key not in FILTERABLE:
                raise InvalidQuery(f"cannot filter on '{key}': filterable keys are {sorted(FILTERABLE)}")
        super().__init__()
        self.store = store
        self.embedder = embedder
        self.mode = mode
        self.top_k = top_k
        self.overfetch = overfetch
        self.fusion = fusion
        self.filters = dict(filters or {})
        # Where LLM-written and text references compete on raw cosine (modes metadata and all, MAX).
        self.weights = dict(weights) if fusion is Fusion.MAX and weights and any(w != 1.0 for w in weights.values()) else None
        self.references_fetched = 0
        self.embed_ms = 0.0

    def _filters(self, search: Search) -> MetadataFilters | None:
        items = []
        # A kind condition every point of the collection meets is left out: embedded Qdrant checks a
        # filter point by point in Python (~10-20 µs each), which dominated retrieval at 10k+ points.
        if set(search.kinds) != KINDS_IN[search.collection]:
            items.append(MetadataFilter(key=layout.KIND, value=[k.value for k in search.kinds], operator=FilterOperator.IN))
        items += [MetadataFilter(key=k, value=v) for k, v in self.filters.items()]
        return MetadataFilters(filters=items) if items else None

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if query_bundle.embedding is None:
            started = time.perf_counter()
            query_bundle.embedding = self.embedder.get_query_embedding(query_bundle.query_str)
            self.embed_ms = round((time.perf_counter() - started) * 1000, 2)
        rankings: list[list[tuple[str, float]]] = []
        matched: dict[str, list[MatchedRef]] = {}
        for search in searches_for(self.mode):
            index = self.store.indexes.get(search.collection)
            if index is None:
                continue
            retriever = index.as_retriever(similarity_top_k=self.top_k * self.overfetch, filters=self._filters(search))
            hits: list[tuple[str, MatchedRef]] = []
            for hit in retriever.retrieve(query_bundle):
                parent_id = getattr(hit.node, "index_id", None) or hit.node.metadata.get(layout.PARENT_ID)
                ref = MatchedRef(kind=RefKind(hit.node.metadata[layout.KIND]), node_id=hit.node.node_id, score=float(hit.score or 0.0))
                hits.append((parent_id, ref))
                matched.setdefault(parent_id, []).append(ref)
            self.references_fetched += len(hits)
            rankings.append(rank_parents(hits, self.weights))
        out: list[NodeWithScore] = []
        for parent_id, score in fuse(rankings, self.fusion):
            parent = self.store.parents.get(parent_id)
            if parent is None:  # a reference whose parent is gone: `pipeline check --repair` removes it
                logger.warning("reference points to missing parent %s", parent_id)
                continue
            refs = sorted(matched[parent_id], key=lambda r: -r.score)
            parent.metadata[MATCHED] = [r.model_dump(mode="json") for r in refs]
            parent.excluded_llm_metadata_keys = [*parent.excluded_llm_metadata_keys, MATCHED]
            parent.excluded_embed_metadata_keys = [*parent.excluded_embed_metadata_keys, MATCHED]
            out.append(NodeWithScore(node=parent, score=score))
            if len(out) == self.top_k:
                break
        return out
