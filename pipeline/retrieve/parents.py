"""Recursive retrieval: search references, follow ``index_id`` to the parent, group, score, cut to k.

This does what LlamaIndex's ``RecursiveRetriever`` does for IndexNodes, but reads parents lazily from
the disk docstore (``RecursiveRetriever`` wants every node in a ``node_dict`` in memory) and counts
``top_k`` in distinct parents rather than in references.

References are searched with one call per collection (``store.qdrant.search``: dense, or dense and
BM25; the edge engine answers without qdrant-client's models, which cost Python time the GIL-bound
service shares with every request), asking only for the payload keys ranking needs (``parent_id``,
``kind``; the node JSON too only when reranking). Why not LlamaIndex's
``VectorStoreIndex`` retriever over ``QdrantVectorStore``, as before: it turns every hit (``top_k ×
overfetch`` per collection and side, up to 150 in mode all at k=3) into a full node
(``metadata_dict_to_node``: JSON and pydantic) of which we read three fields, calls Qdrant once per
side, and qdrant-client deep-copies each batched request (~60 µs for 384 floats). Measured in-process
on the bundled sample (edge backend, hybrid, 300 dev-set queries, load 3-6 on 2 cores): a retrieve
without the query embedding took 6.1-7.8 ms that way in mode all (5.5-7.3 in chunk), and takes
1.8-2.6 ms (1.6-1.9) this way, about 1 ms of which is the engine's own searching; with the embedding,
13-16 → 9.4-11 ms. The results are the same (``tests/e2e/test_retrieve_path.py`` compares both).
Payloads stay LlamaIndex's node format (the ingest writer's ``QdrantVectorStore`` writes them, the
BM25 backfill in ``store/migrate.py`` reads them, stock LlamaIndex code can open the store: see
``Rehydrated.indexes``): only this read is ours. Returned parents are still LlamaIndex nodes, read from the
docstore in one SQL query.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import NodeWithScore, QueryBundle
from qdrant_client import models

from pipeline.config import Fusion, HybridFusion
from pipeline.errors import InvalidQuery
from pipeline.models import MatchedRef, Mode, RefKind
from pipeline.providers.sparse import VECTOR_NAME as SPARSE
from pipeline.providers.sparse import query_vector
from pipeline.retrieve.fuse import fuse, hybrid, rank_parents
from pipeline.retrieve.modes import Search, searches_for
from pipeline.retrieve.rehydrate import Rehydrated
from pipeline.retrieve.rerank import CrossEncoderReranker, rerank
from pipeline.store import layout
from pipeline.store import qdrant as qstore
from pipeline.store.layout import Collection

logger = logging.getLogger(__name__)

MATCHED = "matched_refs"  # metadata key on returned parents: list of MatchedRef dicts
FILTERABLE = {layout.DOC_ID, layout.FILE_NAME, layout.PARENT_ID}
KINDS_IN = {c: {k for k, coll in layout.KIND_TO_COLLECTION.items() if coll is c} for c in layout.Collection}
NODE_CONTENT = layout.NODE_CONTENT  # LlamaIndex's payload key holding the node JSON (with its text)
HIT_KEYS = [layout.PARENT_ID, layout.KIND]  # all a hit needs to be ranked; NODE_CONTENT too for the reranker

Hit = tuple[str, MatchedRef, str]  # (parent id, matched reference, reference text or "")


class ParentRetriever(BaseRetriever):
    """Return the top-k distinct parents for a query in one mode.

    Stages, each optional after the first:
    1. dense: per collection of the mode, ``top_k × overfetch`` references by cosine; a parent's
       dense score is its best reference's cosine plus ``support_weight`` × its next two, over every
       collection (``Fusion.MAX``; the scores of some kinds, by default summaries and questions, first
       multiplied by ``weights``) or the reciprocal-rank fusion of its per-collection ranks (``Fusion.RRF``);
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
        support_weight: float = 0.0,
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
        self.support_weight = support_weight
        self.references_fetched = 0
        self.embedded_queries = 0  # this retrieval's own count (the embedder's usage is per process)
        self.embed_ms = 0.0
        self.rerank_ms = 0.0
        self.stages: list[str] = []

    def _filter(self, search: Search) -> models.Filter | None:
        """The Qdrant filter of one search: the wanted kinds and the caller's filters, all required.

        The conditions are those LlamaIndex's ``QdrantVectorStore`` built from the same
        ``MetadataFilters`` (a float compares as a range, anything else as a match).
        """
        must: list[models.Condition] = []
        # A kind condition every point of the collection meets is left out: embedded Qdrant checks a
        # filter point by point in Python (~10-20 µs each), which dominated retrieval at 10k+ points.
        if set(search.kinds) != KINDS_IN[search.collection]:
            must.append(models.FieldCondition(key=layout.KIND, match=models.MatchAny(any=[k.value for k in search.kinds])))
        for key, value in self.filters.items():
            if isinstance(value, float):
                must.append(models.FieldCondition(key=key, range=models.Range(gte=value, lte=value)))
            else:
                must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        return models.Filter(must=must) if must else None

    def _search_collection(
        self, search: Search, embedding: list[float], sparse: models.SparseVector | None, with_text: bool
    ) -> list[list[Hit]]:
        """Dense hits, then BM25 hits if ``sparse`` is given, of one collection in one Qdrant call; best first.

        Args:
            search: the collection and the reference kinds wanted there.
            embedding: the query's dense vector.
            sparse: the query's BM25 vector, or None for dense only.
            with_text: also read each reference's text (the reranker's input; costs a JSON parse per hit).
        """
        limit = self.top_k * self.overfetch
        flt = self._filter(search)
        # A parent's self-reference names its parent by its id: no payload to read (Rehydrated.parents_of_self_refs).
        self_refs = search.collection is Collection.PARENTS and not with_text
        keys: list[str] | bool = False if self_refs else [*HIT_KEYS, NODE_CONTENT] if with_text else HIT_KEYS
        name = self.store.names[search.collection]
        queries: list[tuple[str | None, Any]] = [(None, embedding)] if sparse is None else [(None, embedding), (SPARSE, sparse)]
        sides = qstore.search(self.store.client, name, queries, flt, limit, keys)
        if self_refs:
            parent_of = self.store.parents_of_self_refs([point_id for points in sides for point_id, _, _ in points])
            sides = [
                [(pid, score, {layout.PARENT_ID: parent_of[pid], layout.KIND: RefKind.PARENT.value}) for pid, score, _ in points if pid in parent_of]
                for points in sides
            ]
        out = []
        for via, points in zip(("dense", "bm25"), sides):
            hits = []
            for point_id, score, payload in points:
                # model_construct: the fields come from our own payloads; validating 30-90 a retrieve cost ~0.5 ms.
                ref = MatchedRef.model_construct(kind=RefKind(payload[layout.KIND]), node_id=point_id, score=float(score), via=via)
                hits.append((payload[layout.PARENT_ID], ref, _text(payload) if with_text else ""))
            self.references_fetched += len(hits)
            out.append(hits)
        return out

    def _search(self, search: Search, query_bundle: QueryBundle, sparse: bool) -> list[Hit]:
        """(parent id, matched ref, reference text) of one side of one collection, best first
        (kept for the tuning scripts in ``benchmarks/``, which score one side at a time)."""
        if query_bundle.embedding is None:
            query_bundle.embedding = self.embedder.get_query_embedding(query_bundle.query_str)
        vector = _sparse_query(query_bundle.query_str) if sparse else None
        if sparse and vector is None:
            return []
        return self._search_collection(search, query_bundle.embedding, vector, with_text=True)[1 if sparse else 0]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if query_bundle.embedding is None:
            started = time.perf_counter()
            query_bundle.embedding = self.embedder.get_query_embedding(query_bundle.query_str)
            self.embedded_queries += 1
            self.embed_ms = round((time.perf_counter() - started) * 1000, 2)
        dense_rankings: list[list[tuple[str, float]]] = []  # per collection, for RRF
        dense_hits: list[tuple[str, MatchedRef]] = []  # every collection's, for MAX
        sparse_rankings: list[list[tuple[str, float]]] = []
        matched: dict[str, list[MatchedRef]] = {}
        texts: dict[str, list[tuple[int, str]]] = {}  # parent → (rank, reference text), kept only for the reranker
        lexical = _sparse_query(query_bundle.query_str) if self.hybrid else None  # built once, for every collection
        for search in searches_for(self.mode):
            if search.collection not in self.store.names:
                continue
            bm25_here = self.bm25_scope == "all" or search.collection is Collection.PARENTS
            vector = lexical if bm25_here and search.collection in self.store.sparse else None
            sides = self._search_collection(search, query_bundle.embedding, vector, with_text=self.reranker is not None)
            for sparse, hits in zip((False, True), sides):
                for rank, (parent_id, ref, text) in enumerate(hits):
                    matched.setdefault(parent_id, []).append(ref)
                    if self.reranker is not None:
                        texts.setdefault(parent_id, []).append((rank, text))
                pairs = [(p, r) for p, r, _ in hits]
                if sparse:
                    sparse_rankings.append(rank_parents(pairs))
                elif self.fusion is Fusion.RRF:
                    dense_rankings.append(rank_parents(pairs))
                else:
                    dense_hits += pairs
        # MAX: a parent's best reference over every collection (the max of per-collection maxima), plus support.
        ranked = fuse(dense_rankings, Fusion.RRF) if self.fusion is Fusion.RRF else rank_parents(dense_hits, self.weights, self.support_weight)
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
        start = 0
        while len(out) < self.top_k and start < len(ranked):
            # The next parents still wanted, read in one query (more only if some were missing).
            batch = ranked[start : start + self.top_k - len(out)]
            start += len(batch)
            found = self.store.parents.get_many([pid for pid, _ in batch])
            for parent_id, score in batch:
                parent = found.get(parent_id)
                if parent is None:  # a reference whose parent is gone: `pipeline check --repair` removes it
                    logger.warning("reference points to missing parent %s", parent_id)
                    continue
                refs = sorted(matched[parent_id], key=lambda r: (r.via != "dense", -r.score))
                parent.metadata[MATCHED] = [{"kind": r.kind.value, "node_id": r.node_id, "score": r.score, "via": r.via} for r in refs]
                parent.excluded_llm_metadata_keys = [*parent.excluded_llm_metadata_keys, MATCHED]
                parent.excluded_embed_metadata_keys = [*parent.excluded_embed_metadata_keys, MATCHED]
                out.append(NodeWithScore(node=parent, score=score))
        return out


def _sparse_query(text: str) -> models.SparseVector | None:
    """The query's BM25 vector, or None if it has no terms (only stop words, say): then no BM25 side."""
    indices, values = query_vector(text)
    return models.SparseVector(indices=indices, values=values) if indices else None


def _text(payload: Mapping[str, Any]) -> str:
    """A reference's text from LlamaIndex's payload, as ``node.get_content()`` returned it."""
    content = payload.get(NODE_CONTENT)
    return json.loads(content).get("text", "") if content else ""
