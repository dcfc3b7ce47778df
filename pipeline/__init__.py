"""Recursive retrieval with node references, made durable: ingest PDFs once, query from any process.

Public API; everything else is internal and may change.
"""

from pipeline.config import Settings
from pipeline.errors import (
    ConfigError,
    EnrichError,
    IngestError,
    InvalidQuery,
    LoadError,
    ModelMismatch,
    PipelineError,
    QueryError,
    StoreError,
    StoreLocked,
    StoreUnavailable,
)
from pipeline.ingest.run import Ingestor, ingest
from pipeline.models import Answer, IngestReport, IngestStats, Mode, RefKind, SourceRef
from pipeline.retrieve.engine import Engine

open_engine = Engine

__all__ = [
    "Answer",
    "ConfigError",
    "EnrichError",
    "Engine",
    "IngestError",
    "IngestReport",
    "IngestStats",
    "Ingestor",
    "InvalidQuery",
    "LoadError",
    "Mode",
    "ModelMismatch",
    "PipelineError",
    "QueryError",
    "RefKind",
    "Settings",
    "SourceRef",
    "StoreError",
    "StoreLocked",
    "StoreUnavailable",
    "ingest",
    "open_engine",
]
