"""One exception tree for the whole package, so callers map failures to exit codes and HTTP status in one place.

    PipelineError
    ├── ConfigError            settings that cannot work (bad provider, missing weights, bad hash)
    ├── IngestError
    │   ├── LoadError          one input file cannot be read (carries ``path``)
    │   └── EnrichError        the LLM failed to write a summary or questions
    ├── StoreError
    │   ├── StoreUnavailable   Qdrant or the docstore cannot be reached or opened
    │   ├── StoreLocked        another process holds the store (embedded mode, or the ingest lock)
    │   └── ModelMismatch      a collection was built with another embedding model or dimension
    └── QueryError
        └── InvalidQuery       empty query, unknown mode, top_k out of range
"""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(PipelineError):
    """Raised when settings cannot work, e.g. missing model weights or an unknown provider."""


class IngestError(PipelineError):
    """Raised when a document cannot be turned into parents and references."""


class LoadError(IngestError):
    """Raised when one input file cannot be read; the run continues with the other files.

    The message always starts with the file path, then the cause and what to do.
    """

    def __init__(self, path: Path | str, reason: str, hint: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        super().__init__(f"{self.path}: {reason}" + (f" ({hint})" if hint else ""))


class EnrichError(IngestError):
    """Raised when the LLM fails to write a summary or the questions of a parent."""


class StoreError(PipelineError):
    """Base of errors about Qdrant collections and the parent docstore."""


class StoreUnavailable(StoreError):
    """Raised when Qdrant or the docstore cannot be reached or opened."""


class StoreLocked(StoreError):
    """Raised when another process holds the store; the message says what to do."""


class ModelMismatch(StoreError):
    """Raised when a collection holds vectors of another embedding model or dimension."""

    def __init__(self, collection: str, stored: str, configured: str) -> None:
        self.collection = collection
        self.stored = stored
        self.configured = configured
        super().__init__(
            f"collection '{collection}' holds {stored}, configured {configured}: "
            "use the same embedding model, or ingest into another --store / collection prefix"
        )


class QueryError(PipelineError):
    """Base of errors raised while answering a query."""


class InvalidQuery(QueryError):
    """Raised for bad query input: empty text, unknown mode, top_k out of range."""
