"""Embed the reference nodes (not the parents, which live only in the docstore) as an ingest step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, IndexNode, MetadataMode, TransformComponent
from pydantic import PrivateAttr


class ReferenceEmbedder(TransformComponent):
    """Set ``embedding`` on every ``IndexNode``; the model is named by public fields for the cache key.

    Example:
        nodes = ReferenceEmbedder(model_name="all-MiniLM-L6-v2-int8", dim=384).with_model(emb)(nodes)
    """

    model_name: str
    dim: int

    _embedder: BaseEmbedding | None = PrivateAttr(default=None)

    def with_model(self, embedder: BaseEmbedding) -> "ReferenceEmbedder":
        self._embedder = embedder
        return self

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[BaseNode]:
        assert self._embedder is not None, "ReferenceEmbedder needs with_model(embedder) before use"
        refs = [n for n in nodes if isinstance(n, IndexNode) and n.embedding is None]
        if refs:
            vectors = self._embedder.get_text_embedding_batch([n.get_content(metadata_mode=MetadataMode.EMBED) for n in refs])
            for node, vec in zip(refs, vectors):
                node.embedding = vec
        return list(nodes)
