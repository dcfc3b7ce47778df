"""Recursive retrieval: search references, follow them to their parents, rank, cut to k distinct parents.

This does what LlamaIndex's ``RecursiveRetriever`` does for IndexNodes, but reads parents lazily from
the disk docstore (``RecursiveRetriever`` wants every node in a ``node_dict`` in memory) and counts
``top_k`` in distinct parents rather than in references. It is composed of four stages, each a
function with its own unit test (``tests/unit/retrieve/``), chosen from ``RetrievalSettings``:

1. ``search.search_references``: per collection of the mode, ``top_k × overfetch`` references (dense,
   and BM25 beside it on ``bm25_scope`` when ``hybrid``);
2. ``fuse.rank_found``: references → parents ranked (best reference plus support, or RRF; dense and
   BM25 fused by ``hybrid_fusion``);
3. ``rerank.rerank_found`` (when ``rerank``): the top candidates re-scored by the cross-encoder;
4. ``read.read_parents``: the first ``top_k`` that exist, read from the docstore as ``SourceRef``s.

Per-request changes are a settings copy (``settings.model_copy(update={"hybrid": False})``), never a
new parameter. Nothing here imports LlamaIndex or qdrant-client: a retrieve-only process pays for
neither (issue 26). ``retrieve/llama.py`` wraps this in a stock LlamaIndex ``BaseRetriever``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import RetrievalSettings
from pipeline.errors import InvalidQuery
from pipeline.models import Mode, SourceRef
from pipeline.retrieve.fuse import rank_found
from pipeline.retrieve.read import read_parents
from pipeline.retrieve.rerank import CrossEncoderReranker, rerank_found
from pipeline.retrieve.modes import Search
from pipeline.retrieve.search import Found, check_filters, lexical_query, matched_by_parent, search_collection, search_references
from pipeline.store.where import Sparse


@dataclass
class Retrieval:
    """What one retrieval returned and did: the parents (with their stored rows, for an LLM answer)
    and the counts ``QueryStats`` reports."""

    sources: list[SourceRef]
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # each source's stored node JSON
    references_fetched: int = 0
    embedded_queries: int = 0  # this retrieval's own count (the embedder's usage is per process)
    embed_ms: float = 0.0
    rerank_ms: float = 0.0
    stages: list[str] = field(default_factory=list)


class ParentRetriever:
    """The top-k distinct parents for a query, by the stages ``settings`` chooses.

    ``embedder``: anything with ``get_query_embedding(str) -> list[float]`` (the lean ONNX encoder, or a
    LlamaIndex embedding). ``reranker``: the cross-encoder, used only when ``settings.rerank``.

    Example:
        retriever = ParentRetriever(store, embedder, settings.retrieval)
        result = retriever.retrieve("How did AlexNet use GPUs?", Mode.CHUNK, top_k=3)
        [s.readable_id for s in result.sources]
    """

    def __init__(self, store: Any, embedder: Any, settings: RetrievalSettings, reranker: CrossEncoderReranker | None = None) -> None:
        if settings.rerank and reranker is None:
            raise ValueError("retrieval.rerank needs a reranker")
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker

    def search_one(self, store: Any, search: Search, embedding: list[float], sparse: Sparse | None, limit: int, filters: Mapping[str, Any], with_text: bool) -> Found:
        """Stage 1 for one collection (``search.search_collection``)."""
        return search_collection(store, search, embedding, sparse, limit, filters, with_text)

    def embed(self, query: str) -> tuple[list[float], float]:
        """The query's vector and the milliseconds it took."""
        started = time.perf_counter()
        vector = self.embedder.get_query_embedding(query)
        return vector, round((time.perf_counter() - started) * 1000, 2)

    def retrieve(
        self, query: str, mode: Mode, top_k: int, filters: Mapping[str, Any] | None = None, embedding: list[float] | None = None
    ) -> Retrieval:
        """Run the stages for ``query``; ``embedding``, when given, is used instead of embedding it."""
        if top_k < 1:
            raise InvalidQuery(f"top_k must be at least 1, got {top_k}")
        cfg = self.settings
        wanted = check_filters(filters)
        out = Retrieval(sources=[])
        if embedding is None:
            embedding, out.embed_ms = self.embed(query)
            out.embedded_queries = 1
        lexical = lexical_query(query) if cfg.hybrid else None  # built once, for every collection
        use_rerank = cfg.rerank and self.reranker is not None
        found = search_references(self.store, mode, embedding, lexical, top_k * cfg.overfetch, wanted, use_rerank, cfg.bm25_scope, self.search_one)
        out.references_fetched = sum(f.fetched for f in found)
        ranked, out.stages = rank_found(found, cfg)
        if use_rerank and ranked:
            started = time.perf_counter()
            ranked = rerank_found(self.reranker, query, ranked, found, cfg, top_k)
            out.rerank_ms = round((time.perf_counter() - started) * 1000, 2)
            out.stages.append("rerank")
        read = read_parents(self.store.parents, ranked, matched_by_parent(found), top_k)
        out.sources = [s for s, _ in read]
        out.rows = [r for _, r in read]
        return out
