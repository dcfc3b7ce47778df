"""LlamaIndex's ``BaseEmbedding`` over our encoders (ingest, eval, the service), or OpenAI-compatible.

The offline models themselves live in ``providers/encoder.py`` with no LlamaIndex import, so a query
process embeds its query without importing LlamaIndex (~1 s of CPU); the classes here wrap the same
encoder for LlamaIndex's ingestion pipeline (``get_text_embedding_batch``), so ingest and query run
the same code and get the same vectors. Every embedder counts what it embeds (``usage``).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from pipeline.config import EmbedProvider, Settings
from pipeline.errors import ConfigError
from pipeline.providers.encoder import (  # re-exported (__all__): the names callers have always imported from here
    BGE_QUERY_PREFIX,
    BGE_SMALL_NAME,
    DEFAULT_ONNX_MODEL,
    MINILM_DIM,
    MINILM_NAME,
    ONNX_MODELS,
    OPENAI_DIMS,
    TOKENIZER_DIR,
    BgeSmallEncoder,
    EmbedUsage,
    FolderEncoder,
    MiniLMEncoder,
    OnnxEncoder,
    build_encoder,
    embed_dim,
    folder_encoder,
    is_folder_model,
    onnx_model_for,
    padded,
    pool,
)
from pipeline.providers.openai_embed import openai_embedder

logger = logging.getLogger(__name__)

__all__ = [
    "BGE_QUERY_PREFIX", "BGE_SMALL_NAME", "DEFAULT_ONNX_MODEL", "MINILM_DIM", "MINILM_NAME", "ONNX_MODELS", "OPENAI_DIMS", "TOKENIZER_DIR",
    "BgeSmallEmbedding", "EmbedUsage", "FolderEmbedding", "OnnxEmbedding", "OnnxMiniLMEmbedding", "build_embedder", "build_encoder",
    "embed_dim", "folder_embedder", "is_folder_model", "onnx_model_for", "openai_embedder", "padded", "pool",
]


class OnnxEmbedding(BaseEmbedding):
    """An ``OnnxEncoder`` behind LlamaIndex's embedding interface; ``encoder`` holds the model.

    Example:
        emb = OnnxEmbedding.wrap(MiniLMEncoder(threads=1))
        emb.get_text_embedding_batch(["a chunk", "another"])
    """

    # The encoder's shape, mirrored for callers that read them from the embedding (not used to embed).
    dim: int = 384
    threads: int = 1
    max_tokens: int = 256
    pooling: str = "mean"
    query_prefix: str = ""
    batch_invariant: ClassVar[bool] = False
    _encoder: OnnxEncoder = PrivateAttr()

    @classmethod
    def class_name(cls) -> str:
        return "OnnxEmbedding"

    @classmethod
    def wrap(cls, encoder: OnnxEncoder) -> "OnnxEmbedding":
        """The embedding class of ``encoder``'s model around it."""
        kind = {MiniLMEncoder: OnnxMiniLMEmbedding, BgeSmallEncoder: BgeSmallEmbedding, FolderEncoder: FolderEmbedding}.get(type(encoder), OnnxEmbedding)
        out = BaseEmbedding.__new__(kind)
        OnnxEmbedding._init(out, encoder)
        return out

    def _init(self, encoder: OnnxEncoder) -> None:
        BaseEmbedding.__init__(
            self, model_name=encoder.model_name, embed_batch_size=encoder.batch_size, dim=encoder.dim, threads=encoder.threads,
            max_tokens=encoder.max_tokens, pooling=encoder.pooling, query_prefix=encoder.query_prefix,
        )
        self._encoder = encoder

    @property
    def encoder(self) -> OnnxEncoder:
        return self._encoder

    @property
    def usage(self) -> EmbedUsage:
        return self._encoder.usage

    def load(self) -> None:
        self._encoder.load()

    def embed_queries(self, queries: list[str]) -> list[list[float]]:
        """Several queries in one ONNX call (``OnnxEncoder.embed_queries``; used by ``QueryBatcher``)."""
        return self._encoder.embed_queries(queries)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encoder.get_query_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encoder.embed_texts([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.embed_texts(texts)

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False, **kwargs: Any) -> list[list[float]]:
        """LlamaIndex's batching (groups of ``embed_batch_size`` texts, in order), the groups run
        ``threads`` at a time (``OnnxEncoder.embed_groups``): ingest on every core, the same vectors."""
        if self._encoder.threads <= 1:
            return super().get_text_embedding_batch(texts, show_progress=show_progress, **kwargs)
        size = max(1, self.embed_batch_size)
        return self._encoder.embed_groups([list(texts[i : i + size]) for i in range(0, len(texts), size)])


class OnnxMiniLMEmbedding(OnnxEmbedding):
    """all-MiniLM-L6-v2 int8 (``MiniLMEncoder``) for LlamaIndex.

    Example:
        emb = OnnxMiniLMEmbedding(threads=1)
        vec = emb.get_query_embedding("How did AlexNet use GPUs?")  # 384 floats
    """

    batch_invariant: ClassVar[bool] = MiniLMEncoder.batch_invariant

    def __init__(self, threads: int = 1, embed_batch_size: int = 10, **_: Any) -> None:
        self._init(MiniLMEncoder(threads=threads, batch_size=embed_batch_size))

    @classmethod
    def class_name(cls) -> str:
        return "OnnxMiniLMEmbedding"


class BgeSmallEmbedding(OnnxEmbedding):
    """bge-small-en-v1.5 int8 (``BgeSmallEncoder``) for LlamaIndex.

    Example:
        emb = BgeSmallEmbedding(threads=1)
        vec = emb.get_query_embedding("How did AlexNet use GPUs?")  # 384 floats
    """

    batch_invariant: ClassVar[bool] = BgeSmallEncoder.batch_invariant

    def __init__(self, threads: int = 1, embed_batch_size: int = 10, **_: Any) -> None:
        self._init(BgeSmallEncoder(threads=threads, batch_size=embed_batch_size))

    @classmethod
    def class_name(cls) -> str:
        return "BgeSmallEmbedding"


class FolderEmbedding(OnnxEmbedding):
    """A folder's ONNX model (``FolderEncoder``, built by ``folder_encoder``) for LlamaIndex."""

    batch_invariant: ClassVar[bool] = FolderEncoder.batch_invariant

    @classmethod
    def class_name(cls) -> str:
        return "FolderEmbedding"


def folder_embedder(settings: Settings) -> OnnxEmbedding:
    """The LlamaIndex embedding of the folder ``embed.model`` names (``encoder.folder_encoder``)."""
    return OnnxEmbedding.wrap(folder_encoder(settings))


def build_embedder(settings: Settings, stored_model: str | None = None) -> BaseEmbedding:
    """The configured embedder as a LlamaIndex ``BaseEmbedding``; weights load on first use (or ``load()``).

    ``stored_model``: the model recorded in the store's collections, if any (see ``onnx_model_for``).
    """
    cfg = settings.embed
    if cfg.provider is EmbedProvider.ONNX:
        return OnnxEmbedding.wrap(build_encoder(settings, stored_model))
    if cfg.provider is EmbedProvider.OPENAI:
        return openai_embedder(settings)
    raise ConfigError(f"unknown embedding provider {cfg.provider!r}")


if __name__ == "__main__":  # scripts/setup.sh: build MiniLM's gather-first rewrite at install time, not at the first query
    MiniLMEncoder().load()
