"""Stock LlamaIndex over our retrieval: a ``BaseRetriever`` returning parents as ``NodeWithScore``.

Imported only when asked for (the LLM answer path, which synthesizes with LlamaIndex, and callers
that want a LlamaIndex retriever, e.g. to plug into their own query engine): the retrieve-only and
extractive paths never import LlamaIndex (issue 26). The parents are the docstore's own nodes
(``json_to_doc`` of the stored rows, as ``ParentStore.get_many`` reads them), each carrying the
references that matched it under ``metadata["matched_refs"]`` (hidden from the LLM and the embedder).

Example:
    from pipeline.retrieve.llama import LlamaIndexRetriever
    retriever = LlamaIndexRetriever(engine.retriever(), Mode.CHUNK, top_k=3)
    nodes = retriever.retrieve("How did AlexNet use GPUs?")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.storage.docstore.utils import json_to_doc

from pipeline.models import Mode
from pipeline.retrieve.parents import ParentRetriever, Retrieval

MATCHED = "matched_refs"  # metadata key on returned parents: list of MatchedRef dicts


def nodes_of(result: Retrieval) -> list[NodeWithScore]:
    """A retrieval's parents as LlamaIndex nodes, in order, with their scores and matched references."""
    out = []
    for source, row in zip(result.sources, result.rows):
        parent = json_to_doc(dict(row))
        parent.metadata[MATCHED] = [m.model_dump(mode="json", exclude_none=True) for m in source.matched]
        parent.excluded_llm_metadata_keys = [*parent.excluded_llm_metadata_keys, MATCHED]
        parent.excluded_embed_metadata_keys = [*parent.excluded_embed_metadata_keys, MATCHED]
        out.append(NodeWithScore(node=parent, score=source.score))
    return out


class LlamaIndexRetriever(BaseRetriever):
    """``ParentRetriever`` behind LlamaIndex's retriever interface; ``last`` holds the last ``Retrieval``
    (its sources and stage counts)."""

    def __init__(self, retriever: ParentRetriever, mode: Mode, top_k: int, filters: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.retriever = retriever
        self.mode = mode
        self.top_k = top_k
        self.filters = dict(filters or {})
        self.last: Retrieval | None = None

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        embedding = list(query_bundle.embedding) if query_bundle.embedding is not None else None
        self.last = self.retriever.retrieve(query_bundle.query_str, self.mode, self.top_k, self.filters, embedding=embedding)
        return nodes_of(self.last)
