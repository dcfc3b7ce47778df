"""An ingest with nothing to do, answered in a fraction of a second (cron-friendly; issue 26).

A scheduled ``pipeline ingest papers/`` usually finds every file as it was. The full run proves
that only after importing LlamaIndex, qdrant-client and the embedder (~3 s of CPU) to compute the
settings fingerprint. This module decides the same thing from what is cheap to read, and answers
with the report the full run would print, or says "ask the full run" (None) at the first doubt:

- every scanned file is in the ledger as last seen (size, mtime, inode and ctime: ``file_stat``),
  whole, not marked for rebuild, named, with no recorded failure;
- the settings fingerprint of those entries is the one the last full run computed for the same
  settings, model and code (``remember`` keeps it in ``<store>/ingest-memo.json``, keyed by a hash
  of exactly what shapes it, so any change misses the memo);
- nothing else would be done: no interrupted removal, no layout or BM25 migration pending, no
  document to prune with ``--sync``, no enrichment to run, and the engine holds as many references
  per collection as the ledger lists (the full run's damage check, ``mark_damaged``).

It writes nothing, so being wrong in the direction of "nothing to do" is the only risk, and each
rule above is the full run's own (``LedgerEntry.unchanged``/``known_hash``, ``prune_candidates``,
``total_refs``, ``needs_migration``/``needs_sparse``); ``tests/unit/ingest/test_quick.py`` checks the
two reports are equal and that each doubt sends the run to the full path. Fleet mode always takes the
full path (other workers' writes are in flight).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.config import EnrichPolicy, LLMProvider, Settings
from pipeline.errors import PipelineError
from pipeline.ingest.plan import prune_candidates
from pipeline.ingest.scan import ScanLimits, scan
from pipeline.models import FileResult, IngestReport, IngestStats
from pipeline.store.layout import doc_id_for

logger = logging.getLogger(__name__)

MEMO_FILE = "ingest-memo.json"
MEMO_KEEP = 8  # settings combinations remembered per store
# The modules whose code shapes phase 1's output, hashed into the memo key: a changed splitter or
# reference builder must not be taken for the old one.
_SHAPING = ("split.py", "reference.py", "embed.py", "fingerprint.py")


def memo_key(settings: Settings, model: str) -> str:
    """Hash of what phase 1's fingerprint is a function of: sizes, embedding settings, the store's
    model, our transforms' code and LlamaIndex's version (its splitters are in the fingerprint)."""
    here = Path(__file__).parent
    code = hashlib.sha256(b"".join((here / name).read_bytes() for name in _SHAPING)).hexdigest()
    try:
        llama = metadata.version("llama-index-core")
    except metadata.PackageNotFoundError:
        llama = "?"
    cfg = settings.ingest
    shaping = {
        "parent": cfg.parent_chunk_size,
        "children": list(cfg.child_chunk_sizes),
        "overlap": cfg.chunk_overlap,
        "embed": settings.embed.model_dump(mode="json", exclude={"threads", "batch_size"}),
        "model": model,
        "code": code,
        "llama_index_core": llama,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:24]


def _memo_path(settings: Settings) -> Path:
    return settings.store / MEMO_FILE


def _read_memo(settings: Settings) -> dict[str, Any]:
    try:
        memo = json.loads(_memo_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def remember(settings: Settings, model: str, fingerprint: str) -> None:
    """Record the fingerprint a full run computed for these settings and model (best effort: a memo
    that cannot be written only means the next run with nothing to do takes the full path)."""
    from pipeline.store.state import fleet

    if fleet(settings):
        return
    key = memo_key(settings, model)
    memo = _read_memo(settings)
    if memo.get(key, {}).get("fingerprint") == fingerprint:
        return
    memo.pop(key, None)
    memo[key] = {"fingerprint": fingerprint, "model": model}
    memo = dict(list(memo.items())[-MEMO_KEEP:])
    path = _memo_path(settings)
    tmp = path.with_name(f".{MEMO_FILE}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(memo, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        logger.debug("ingest memo not written (%s): the next unchanged run takes the full path", exc)
        tmp.unlink(missing_ok=True)


def _enriches(settings: Settings) -> bool:
    """``ingest/run.py``'s ``enrich_during_ingest`` (its LLM rule is lean: providers/llm.py)."""
    from pipeline.providers.llm import llm_is_capable

    policy = settings.ingest.enrich
    if policy is EnrichPolicy.NOW:
        return True
    return policy is EnrichPolicy.AUTO and settings.llm.provider is not LLMProvider.NONE and llm_is_capable(settings)


def unchanged_report(settings: Settings, paths: Sequence[Path], prune: bool = False, limits: ScanLimits | None = None) -> IngestReport | None:
    """The report of an ingest of ``paths`` with nothing to do, or None if anything may need doing.

    Takes the store's ingest lock (a running ingest: None, and the full run waits or says so).
    """
    from pipeline.store.state import fleet

    if fleet(settings) or not settings.docstore_path.is_file() or _enriches(settings):
        return None
    memo = _read_memo(settings)
    if not memo:
        return None
    started = time.perf_counter()
    from filelock import Timeout

    from pipeline.store.lock import store_lock

    lock = store_lock(settings, 0.0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    try:
        return _decide(settings, paths, prune, limits or ScanLimits(), memo, started)
    except PipelineError as exc:  # a damaged or busy store: the full run reports it properly
        logger.debug("quick ingest check gave way to the full run: %s", exc)
        return None
    finally:
        lock.release()


def _decide(settings: Settings, paths: Sequence[Path], prune: bool, limits: ScanLimits, memo: dict[str, Any], started: float) -> IngestReport | None:
    from pipeline.store.docstore import LedgerReader
    from pipeline.store.ledger import Op, total_refs
    from pipeline.store.migrate import _legacy

    found = scan(paths, limits)
    if found.over_limit or not found.files:
        return None
    reader = LedgerReader(settings.docstore_path)
    raw = reader.raw_ledger()
    failures = reader.failures()
    if any(_legacy(entry) for entry in raw.values()):
        return None
    from pipeline.store.ledger import LedgerEntry

    ledger = {doc: LedgerEntry.model_validate(entry) for doc, entry in raw.items()}
    if any(e.pending is not None and e.pending.op is Op.REMOVE for e in ledger.values()):
        return None
    entries = []
    for path in found.files:
        doc_id = doc_id_for(path)
        entry = ledger.get(doc_id)
        if entry is None or doc_id in failures or not entry.name or entry.hidden:
            return None
        if not entry.unchanged(entry.known_hash(found.stats.get(path)), entry.fingerprint or ""):
            return None
        entries.append((path, doc_id, entry))
    seen = {doc_id for _, doc_id, _ in entries}
    if prune and prune_candidates(paths, ledger, seen):
        return None
    if not _store_agrees(settings, memo, {e.fingerprint for _, _, e in entries}, total_refs(ledger.values())):
        return None
    return _report(settings, found, entries, started)


def _store_agrees(settings: Settings, memo: dict[str, Any], fingerprints: set[str | None], listed: dict[str, int]) -> bool:
    """The engine's side: the four collections exist with the store's model and BM25 vectors (none
    missing), hold what the ledger lists, and the entries' fingerprint is the memo's for this model."""
    from pipeline.store import qdrant as qstore
    from pipeline.store.migrate import needs_sparse

    client = qstore.open_client(settings)
    try:
        model = qstore.stored_model(client, settings)
        known = memo.get(memo_key(settings, model or ""), {})
        if model is None or fingerprints != {known.get("fingerprint")}:
            return False
        collections = qstore.names(settings)
        if not all(qstore.with_retries(client.collection_exists)(n) for n in collections.values()):
            return False
        if needs_sparse(client, collections):
            return False
        counts = {c.value: qstore.count_points(client, n) for c, n in collections.items()}
        return counts == listed
    finally:
        client.close()


def _report(settings: Settings, found: Any, entries: list[tuple[Path, str, Any]], started: float) -> IngestReport:
    """What ``Ingestor.run`` reports for the same files (``ingest/run.py``: ``_run_locked``)."""
    stats = IngestStats()
    files: list[FileResult] = []
    for skipped in found.skipped:
        files.append(FileResult(path=skipped.path, status="failed", reason=skipped.reason))
    for skipped in found.unsupported:
        files.append(FileResult(path=skipped.path, status="skipped", reason=skipped.reason))
    kinds: Counter[str] = Counter()
    for path, doc_id, entry in entries:
        stats.parents += len(entry.parents)
        kinds.update(entry.kinds)
        files.append(FileResult(path=str(path), doc_id=doc_id, status="unchanged", parents=len(entry.parents)))
    stats.enrich = "none" if settings.llm.provider is LLMProvider.NONE else ("later" if settings.ingest.enrich is EnrichPolicy.LATER else "skipped")
    stats.parents_unenriched = sum(len(e.parents) for _, _, e in entries) - sum(len(e.enriched) for _, _, e in entries)
    for f in files:
        setattr(stats, f"files_{f.status}", getattr(stats, f"files_{f.status}") + 1)
    stats.documents = len(entries)
    stats.references = dict(sorted(kinds.items()))
    stats.seconds = round(time.perf_counter() - started, 3)
    return IngestReport(store=str(settings.store), stats=stats, files=files)
