"""Phase 1's transforms and the fingerprint the ledger records for them, in one place.

The real ingest and ``ingest --dry-run`` decide "unchanged" with the same fingerprint (they once
drifted: the dry run compared no settings at all), and ``check --repair`` rebuilds references with
the same transforms, so the cache keys match. The embedder follows the model the store was built with
unless the settings name another (``store_embedder``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import TransformComponent

from pipeline.config import Settings
from pipeline.ingest.embed import ReferenceEmbedder
from pipeline.ingest.reference import ReferenceBuilder
from pipeline.ingest.split import ParentSplitter


def phase1_transforms(settings: Settings, embedder: BaseEmbedding, dim: int) -> tuple[list[TransformComponent], list[TransformComponent]]:
    """(per document: the parent splitter; per parent: references, then their embeddings)."""
    cfg = settings.ingest
    split: list[TransformComponent] = [ParentSplitter(chunk_size=cfg.parent_chunk_size)]
    per_parent: list[TransformComponent] = [ReferenceBuilder(chunk_sizes=cfg.child_chunk_sizes, chunk_overlap=cfg.chunk_overlap)]
    per_parent.append(ReferenceEmbedder(model_name=embedder.model_name, dim=dim).with_model(embedder))
    return split, per_parent


def fingerprint(transforms: Sequence[TransformComponent]) -> str:
    """Hash of every setting that shapes the output, so a config change re-processes documents."""
    text = json.dumps([t.to_dict() for t in transforms], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_embedder(settings: Settings, client: Any, embedder: BaseEmbedding) -> BaseEmbedding | None:
    """The embedder for the model ``client``'s collections were built with, if it differs from ``embedder``.

    So a store built with bge-small keeps ingesting with it after the default changes; an explicit
    other model still fails in ``ensure_collections`` with both names.
    """
    from pipeline.providers.embeddings import build_embedder
    from pipeline.store import qdrant as qstore

    stored = qstore.stored_model(client, settings)
    if stored is None or stored == embedder.model_name:
        return None
    return build_embedder(settings, stored)
