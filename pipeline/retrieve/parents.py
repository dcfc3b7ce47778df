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
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters, VectorStoreQueryMode

from pipeline.config import Fusion, HybridFusion
from pipeline.errors import InvalidQuery
from pipeline.models import MatchedRef, Mode, RefKind
from pipeline.providers.sparse import query_vector
from pipeline.retrieve.fuse import fuse, hybrid, rank_parents
from pipeline.retrieve.modes import Search, searches_for
from pipeline.retrieve.rehydrate import Rehydrated
from pipeline.retrieve.rerank import CrossEncoderReranker, rerank
from pipeline.store import layout
from pipeline.store.layout import Collection

logger = logging.getLogger(__name__)

MATCHED = "matched_refs"  # metadata key on returned parents: list of MatchedRef dicts
FILTERABLE = {layout.DOC_ID, layout.FILE_NAME, layout.PARENT_ID}
KINDS_IN = {c: {k for k, coll in layout.KIND_TO_COLLECTION.items() if coll is c} for c in layout.Collection}


class ParentRetriever(BaseRetriever):
    """Return the top-k distinct parents for a query in one mode.

    Stages, each optional after the first:
    1. dense: per collection of the mode, ``top_k × overfetch`` references by cosine; a parent's
       dense score is its best reference's cosine (``Fusion.MAX``; the scores of some kinds, by
       default summaries and questions, first multiplied by ``weights``) or the reciprocal-rank
       fusion of its per-collection ranks (``Fusion.RRF``);
    2. sparse (``hybrid``): BM25 over the parents' self-references (``bm25_scope="parents"``, the
       default: as good as every collection on the dev sets and ~18× fewer points to score in embedded
       mode) or over every collection of the mode (``"all"``), a parent scoring its best reference;
       dense and sparse parent rankings fused by ``hybrid_fusion`` (``fuse.hybrid``);
    3. rerank (``reranker``): the first ``rerank_candidates`` parents re-scored by a cross-encoder on
       their best-matching reference texts (``rerank.rerank``);
    then the cut to ``top_k`` distinct parents, read lazily from the docstore.

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
        hybrid: bool = False,
        hybrid_fusion: HybridFusion = HybridFusion.RELATIVE,
        dense_weight: float = 0.7,
        reranker: CrossEncoderReranker | None = None,
        rerank_candidates: int = 10,
        rerank_passages: int = 1,
        rerank_first_stage_weight: float = 0.5,
        bm25_scope: str = "parents",
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
        self.hybrid = hybrid
        self.hybrid_fusion = hybrid_fusion
        self.dense_weight = dense_weight
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.rerank_passages = rerank_passages
        self.rerank_first_stage_weight = rerank_first_stage_weight
        self.bm25_scope = bm25_scope
        self.references_fetched = 0
        self.embedded_queries = 0  # this retrieval's own count (the embedder's usage is per process)
        self.embed_ms = 0.0
        self.rerank_ms = 0.0
        self.stages: list[str] = []

    def _filters(self, search: Search) -> MetadataFilters | None:
        items = []
        # A kind condition every point of the collection meets is left out: embedded Qdrant checks a
        # filter point by point in Python (~10-20 µs each), which dominated retrieval at 10k+ points.
        if set(search.kinds) != KINDS_IN[search.collection]:
            items.append(MetadataFilter(key=layout.KIND, value=[k.value for k in search.kinds], operator=FilterOperator.IN))
        items += [MetadataFilter(key=k, value=v) for k, v in self.filters.items()]
        return MetadataFilters(filters=items) if items else None

    def _search(self, search: Search, query_bundle: QueryBundle, sparse: bool) -> list[tuple[str, MatchedRef, str]]:
        """(parent id, matched ref, reference text) of one collection, best first."""
        index = self.store.indexes[search.collection]
        limit = self.top_k * self.overfetch
        if sparse:
            retriever = index.as_retriever(
                similarity_top_k=limit, sparse_top_k=limit, filters=self._filters(search), vector_store_query_mode=VectorStoreQueryMode.SPARSE
            )
        else:
            retriever = index.as_retriever(similarity_top_k=limit, filters=self._filters(search))
        out = []
        for hit in retriever.retrieve(query_bundle):
            parent_id = getattr(hit.node, "index_id", None) or hit.node.metadata.get(layout.PARENT_ID)
            ref = MatchedRef(kind=RefKind(hit.node.metadata[layout.KIND]), node_id=hit.node.node_id, score=float(hit.score or 0.0), via="bm25" if sparse else "dense")
            out.append((parent_id, ref, hit.node.get_content()))
        self.references_fetched += len(out)
        return out

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if query_bundle.embedding is None:
            started = time.perf_counter()
            query_bundle.embedding = self.embedder.get_query_embedding(query_bundle.query_str)
            self.embedded_queries += 1
            self.embed_ms = round((time.perf_counter() - started) * 1000, 2)
        dense_rankings: list[list[tuple[str, float]]] = []
        sparse_rankings: list[list[tuple[str, float]]] = []
        matched: dict[str, list[MatchedRef]] = {}
        texts: dict[str, list[tuple[int, str]]] = {}  # parent → (rank, reference text), kept only for the reranker
        lexical = self.hybrid and bool(query_vector(query_bundle.query_str)[0])
        for search in searches_for(self.mode):
            if search.collection not in self.store.indexes:
                continue
            bm25_here = self.bm25_scope == "all" or search.collection is Collection.PARENTS
            sides = [False] + ([True] if lexical and bm25_here and search.collection in self.store.sparse else [])
            for sparse in sides:
                hits = self._search(search, query_bundle, sparse)
                for rank, (parent_id, ref, text) in enumerate(hits):
                    matched.setdefault(parent_id, []).append(ref)
                    if self.reranker is not None:
                        texts.setdefault(parent_id, []).append((rank, text))
                ranking = rank_parents([(p, r) for p, r, _ in hits], None if sparse else self.weights)
                (sparse_rankings if sparse else dense_rankings).append(ranking)
        ranked = fuse(dense_rankings, self.fusion)
        self.stages = ["dense"]
        if sparse_rankings:
            ranked = hybrid(ranked, fuse(sparse_rankings, Fusion.MAX), self.hybrid_fusion, self.dense_weight)
            self.stages.append(f"bm25-{self.hybrid_fusion.value}")
        if self.reranker is not None and ranked:
            started = time.perf_counter()
            # Each candidate's distinct reference texts, best-ranked first (a stable sort keeps ties in search order).
            passages = {
                pid: list(dict.fromkeys(text for _, text in sorted(texts.get(pid, []), key=lambda rt: rt[0])))
                for pid, _ in ranked[: self.rerank_candidates]
            }
            ranked = rerank(
                self.reranker, query_bundle.query_str, ranked, passages, self.rerank_candidates, self.rerank_passages, self.rerank_first_stage_weight
            )
            self.rerank_ms = round((time.perf_counter() - started) * 1000, 2)
            self.stages.append("rerank")
        out: list[NodeWithScore] = []
        for parent_id, score in ranked:
            parent = self.store.parents.get(parent_id)
            if parent is None:  # a reference whose parent is gone: `pipeline check --repair` removes it
                logger.warning("reference points to missing parent %s", parent_id)
                continue
            refs = sorted(matched[parent_id], key=lambda r: (r.via != "dense", -r.score))
            parent.metadata[MATCHED] = [r.model_dump(mode="json") for r in refs]
            parent.excluded_llm_metadata_keys = [*parent.excluded_llm_metadata_keys, MATCHED]
            parent.excluded_embed_metadata_keys = [*parent.excluded_embed_metadata_keys, MATCHED]
            out.append(NodeWithScore(node=parent, score=score))
            if len(out) == self.top_k:
                break
        return out
