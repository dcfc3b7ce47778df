"""The OpenAI-compatible embedder (``embed.provider=openai``): LlamaIndex's ``OpenAIEmbedding``, counting.

Its own module so the lean encoders (``providers/encoder.py``) and the LlamaIndex wrappers
(``providers/embeddings.py``) both reach it without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from pipeline.errors import ConfigError
from pipeline.providers.usage import EmbedUsage

if TYPE_CHECKING:
    from pipeline.config import Settings


def _counting_openai_class() -> type[Any]:
    from llama_index.embeddings.openai import OpenAIEmbedding

    class CountingOpenAIEmbedding(OpenAIEmbedding):
        """``OpenAIEmbedding`` that counts texts and queries, like every embedder here."""

        _usage: EmbedUsage = PrivateAttr(default_factory=EmbedUsage)

        @property
        def usage(self) -> EmbedUsage:
            return self._usage

        def load(self) -> None:
            return None

        def _get_query_embedding(self, query: str) -> list[float]:
            self._usage.add(queries=1)
            return super()._get_query_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            self._usage.add(queries=1)
            return await super()._aget_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            self._usage.add(texts=1)
            return super()._get_text_embedding(text)

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            self._usage.add(texts=len(texts))
            return super()._get_text_embeddings(texts)

    return CountingOpenAIEmbedding


def openai_embedder(settings: Settings) -> Any:
    """LlamaIndex's OpenAI embedding for ``embed.model`` (default text-embedding-3-small), counting its calls."""
    cfg = settings.embed
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key is None and cfg.api_base is None:
        raise ConfigError("embed.provider=openai needs OPENAI_API_KEY (or PIPELINE_EMBED__API_BASE for a local server)")
    openai_cls = _counting_openai_class()
    return openai_cls(
        model=cfg.model or "text-embedding-3-small",
        api_key=key or "not-needed",
        api_base=cfg.api_base,
        embed_batch_size=cfg.batch_size,
    )
