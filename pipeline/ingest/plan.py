"""What an ingest would do, without doing it (``ingest --dry-run``): no LLM, no embeddings, no writes.

Imports nothing heavy at module level: ``prune_candidates`` is also the rule of an ingest with
nothing to do (``ingest/quick.py``), which must start in a fraction of a second."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from pipeline.config import Settings
from pipeline.errors import LoadError
from pipeline.store.state import has_docstore, open_parents
from pipeline.ingest.scan import file_stat
from pipeline.store.layout import doc_id_for

if TYPE_CHECKING:
    from pipeline.store.ledger import LedgerEntry


class PlannedFile(BaseModel):
    path: str
    action: str  # add | update | unchanged | remove | fail
    parents_new: int = 0
    parents_kept: int = 0
    parents_dropped: int = 0
    reason: str = ""


class Plan(BaseModel):
    store: str
    counts: dict[str, int] = Field(default_factory=dict)
    files: list[PlannedFile] = Field(default_factory=list)


def prune_candidates(roots: Sequence[Path], ledger: Iterable[str], seen: set[str]) -> list[str]:
    """Documents ``--sync`` removes: under one of the given folders, not seen by this run, file gone.
    Never outside the folders given (the real run and the dry run share this rule)."""
    prefixes = [doc_id_for(r).rstrip("/") + "/" for r in roots if r.is_dir()]
    return [
        doc_id for doc_id in sorted(ledger)
        if doc_id not in seen and any(doc_id.startswith(p) for p in prefixes) and not Path(doc_id).exists()
    ]


def _fingerprint(settings: Settings, has_store: bool) -> str:
    """Phase 1's fingerprint as the real run computes it (following the store's model where it can
    read it; a store open in another process falls back to the configured model)."""
    from pipeline.errors import PipelineError
    from pipeline.ingest.fingerprint import fingerprint, phase1_transforms, store_embedder
    from pipeline.providers.embeddings import build_embedder, embed_dim
    from pipeline.store import qdrant as qstore

    embedder = build_embedder(settings)  # weights load on first use: never here
    if has_store:
        try:
            client = qstore.open_client(settings)
        except PipelineError:
            client = None
        if client is not None:
            try:
                embedder = store_embedder(settings, client, embedder) or embedder
            finally:
                client.close()
    split, per_parent = phase1_transforms(settings, embedder, embed_dim(embedder))
    return fingerprint(split + per_parent)


def _unchanged(old: LedgerEntry, path: Path, fingerprint: str) -> bool:
    """As the real run decides: the file as last seen (size, mtime, inode, ctime) or the same bytes."""
    from pipeline.ingest.load import file_hash

    try:
        seen = file_stat(os.stat(path))
    except OSError:
        seen = None
    return old.unchanged(old.known_hash(seen), fingerprint) or old.unchanged(file_hash(path), fingerprint)


def plan_ingest(settings: Settings, paths: Sequence[Path], prune: bool) -> Plan:
    """Compare the files with the ledger; for changed files, count parents that would be redone.

    Parent ids are content-addressed, so splitting (cheap, no models) tells exactly which parents
    a real run would re-summarise and re-embed.
    """
    from pipeline.ingest.load import discover, load_document  # LlamaIndex: only where something is planned
    from pipeline.ingest.split import ParentSplitter

    store = open_parents(settings) if has_docstore(settings) else None
    ledger = store.ledger() if store else {}
    if store:
        store.close()
    fingerprint = _fingerprint(settings, bool(ledger))
    splitter = ParentSplitter(chunk_size=settings.ingest.parent_chunk_size)
    plan = Plan(store=str(settings.store))
    seen: set[str] = set()
    for path in discover(paths):
        doc_id = doc_id_for(path)
        seen.add(doc_id)
        old = ledger.get(doc_id)
        if old is not None and _unchanged(old, path, fingerprint):  # the real run's own rule
            plan.files.append(PlannedFile(path=str(path), action="unchanged", parents_kept=len(old.parents)))
            continue
        try:
            doc = load_document(path, settings.ingest.pdf_passwords)
        except LoadError as exc:
            plan.files.append(PlannedFile(path=str(path), action="fail", reason=exc.reason))
            continue
        new_ids = [p.node_id for p in splitter([doc])]
        old_ids = set(old.parents) if old else set()
        plan.files.append(
            PlannedFile(
                path=str(path),
                action="update" if old else "add",
                parents_new=sum(1 for i in new_ids if i not in old_ids),
                parents_kept=sum(1 for i in new_ids if i in old_ids),
                parents_dropped=len(old_ids - set(new_ids)),
            )
        )
    if prune:
        for doc_id in prune_candidates(paths, ledger, seen):
            plan.files.append(PlannedFile(path=doc_id, action="remove", parents_dropped=len(ledger[doc_id].parents)))
    for f in plan.files:
        plan.counts[f.action] = plan.counts.get(f.action, 0) + 1
    return plan
