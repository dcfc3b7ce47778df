"""Recursive retrieval with node references, made durable: ingest PDFs once, query from any process.

Public API; everything else is internal and may change. ``Ingestor``/``ingest`` and
``Engine``/``open_engine`` are imported on first use (PEP 562 ``__getattr__``): importing them pulls
in LlamaIndex and qdrant-client (~1.5 s), which ``python -m pipeline --help`` must not pay.
"""

import importlib
from typing import TYPE_CHECKING, Any

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
from pipeline.models import Answer, IngestReport, IngestStats, Mode, RefKind, SourceRef

if TYPE_CHECKING:
    from pipeline.ingest.run import Ingestor
    from pipeline.retrieve.engine import Engine

    open_engine = Engine

# The (empty) ``pipeline.ingest`` package is imported first, so that the function below, not the
# package, is what ``pipeline.ingest`` names (importing a subpackage later would not rebind it).
importlib.import_module("pipeline.ingest")


def ingest(settings: Settings, paths: Any, **kwargs: Any) -> IngestReport:
    """Build an ``Ingestor`` from settings and run it on ``paths`` (see ``pipeline.ingest.run.ingest``)."""
    from pipeline.ingest.run import ingest as run_ingest

    return run_ingest(settings, paths, **kwargs)


_LAZY = {"Ingestor": "pipeline.ingest.run", "Engine": "pipeline.retrieve.engine", "open_engine": "pipeline.retrieve.engine"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), "Engine" if name == "open_engine" else name)
    globals()[name] = value
    return value

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
