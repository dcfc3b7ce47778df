"""Ingest: files → parents → references → embeddings (cached) → docstore + Qdrant, one document at a time.

Two ``IngestionPipeline`` runs share one persistent cache: one splits a document into parents, one
turns a single parent into its references. Caching per parent means that when one page of a long
PDF changes, only the parents whose text changed miss the cache and are re-summarised and re-embedded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from filelock import FileLock, Timeout
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import LLM
from llama_index.core.schema import BaseNode, TransformComponent
from qdrant_client import QdrantClient

from pipeline.config import Settings
from pipeline.errors import IngestError, LoadError, StoreLocked
from pipeline.ingest.cache import CountingCache
from pipeline.ingest.embed import ReferenceEmbedder
from pipeline.ingest.enrich import ParentEnricher
from pipeline.ingest.load import file_hash, load_document
from pipeline.ingest.reference import ReferenceBuilder
from pipeline.ingest.scan import ScanLimits, scan
from pipeline.ingest.split import ParentSplitter
from pipeline.ingest.write import DocumentWriter
from pipeline.models import FileResult, IngestReport, IngestStats
from pipeline.providers.embeddings import build_embedder, embed_dim
from pipeline.providers.llm import build_llm, llm_calls
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import ParentStore
from pipeline.store.layout import doc_id_for
from pipeline.store.migrate import migrate_parent_refs

logger = logging.getLogger(__name__)

# Called with (event, detail): "file" before each file, "parent" after each parent, "done" per file.
ProgressFn = Callable[[str, dict], None]


def _noop(event: str, detail: dict) -> None:
    return None


def store_lock(settings: Settings, timeout: float) -> FileLock:
    settings.store.mkdir(parents=True, exist_ok=True)
    return FileLock(str(settings.store / "ingest.lock"), timeout=timeout)


class Ingestor:
    """Runs ingestion against one store; models and clients are passed in or built from settings.

    Example:
        report = Ingestor(Settings(store=Path("storage"))).run([Path("papers/")])
        report.stats.llm_calls  # 0 on a second run over unchanged files
    """

    def __init__(
        self,
        settings: Settings,
        embedder: BaseEmbedding | None = None,
        llm: LLM | None = None,
        progress: ProgressFn = _noop,
        lock_timeout: float = 0.0,
        client: QdrantClient | None = None,
        limits: ScanLimits | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits or ScanLimits()  # the service's ingest roots and caps; none for the CLI
        self.client = client  # an open client to reuse (the service's embedded one); left open after a run
        self.embedder = embedder or build_embedder(settings)
        self.llm = llm if llm is not None else (build_llm(settings) if settings.ingest.enrich else None)
        self.progress = progress
        self.lock_timeout = lock_timeout

    def _transforms(self, dim: int) -> tuple[list[TransformComponent], list[TransformComponent]]:
        cfg = self.settings.ingest
        split = [ParentSplitter(chunk_size=cfg.parent_chunk_size)]
        per_parent: list[TransformComponent] = [ReferenceBuilder(chunk_sizes=cfg.child_chunk_sizes, chunk_overlap=cfg.chunk_overlap)]
        if self.llm is not None:
            per_parent.append(ParentEnricher(llm_name=self.llm.metadata.model_name, num_questions=cfg.questions).with_llm(self.llm))
        per_parent.append(ReferenceEmbedder(model_name=self.embedder.model_name, dim=dim).with_model(self.embedder))
        return split, per_parent

    @staticmethod
    def fingerprint(transforms: Sequence[TransformComponent]) -> str:
        """Hash of every setting that shapes the output, so a config change re-processes documents."""
        text = json.dumps([t.to_dict() for t in transforms], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def output_fingerprint(self) -> str:
        """The fingerprint of this ingestor's transforms (models, prompts, sizes), without touching a store.

        Two ingestors with the same fingerprint write the same parents and references; ``eval`` uses
        it to name an isolated store per dataset and configuration.
        """
        split, per_parent = self._transforms(embed_dim(self.embedder))
        return self.fingerprint(split + per_parent)

    def run(self, paths: Sequence[Path], prune: bool = False) -> IngestReport:
        """Ingest files and folders; with ``prune``, also remove documents under the given folders
        whose files are gone.

        Raises:
            StoreLocked: another ingest holds the store (after ``lock_timeout`` seconds).
            StoreUnavailable / ModelMismatch: fatal store problems; per-file problems are reported instead.
        """
        started = time.perf_counter()
        lock = store_lock(self.settings, self.lock_timeout)
        try:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if self.lock_timeout <= 0:
                    raise
                logger.warning("another ingest holds %s: waiting up to %.0f s", lock.lock_file, self.lock_timeout)
                lock.acquire()
        except Timeout as exc:
            raise StoreLocked(
                f"another ingest is writing to {self.settings.store} (lock {lock.lock_file}); "
                "wait for it, or raise --lock-timeout"
            ) from exc
        try:
            return self._run_locked(paths, prune, started)
        finally:
            lock.release()

    def _run_locked(self, paths: Sequence[Path], prune: bool, started: float) -> IngestReport:
        settings = self.settings
        stats = IngestStats()
        files: list[FileResult] = []
        usage_before = self.embedder.usage.texts if hasattr(self.embedder, "usage") else 0
        llm_before = llm_calls(self.llm)
        client = self.client or qstore.open_client(settings)
        parents = ParentStore(settings.store / "docstore.sqlite")
        cache = CountingCache.open(settings.store / "cache.sqlite")
        try:
            dim = embed_dim(self.embedder)
            collections = qstore.ensure_collections(client, settings, self.embedder.model_name, dim)
            migrate_parent_refs(client, collections, parents)
            writer = DocumentWriter(client, collections, parents)
            split, per_parent = self._transforms(dim)
            fingerprint = self.fingerprint(split + per_parent)
            split_pipe = IngestionPipeline(transformations=split, cache=cache)
            parent_pipe = IngestionPipeline(transformations=per_parent, cache=cache)
            kinds: Counter[str] = Counter()
            found = scan(paths, self.limits)
            files.extend(FileResult(path=s.path, status="failed", reason=s.reason) for s in found.skipped)
            sources = found.files
            for path in sources:
                self.progress("file", {"path": str(path), "total": len(sources)})
                result = self._ingest_file(path, fingerprint, split_pipe, parent_pipe, writer, parents, stats, kinds)
                files.append(result)
                self.progress("done", {"path": str(path), "status": result.status, "reason": result.reason})
            if prune:
                files.extend(self._prune(paths, writer, parents, sources))
        finally:
            parents.close()
            if self.client is None:
                client.close()
        for f in files:
            setattr(stats, f"files_{f.status}", getattr(stats, f"files_{f.status}") + 1)
        stats.documents = sum(1 for f in files if f.status in ("added", "updated", "unchanged"))
        stats.references = dict(sorted(kinds.items()))
        stats.llm_calls = llm_calls(self.llm) - llm_before
        stats.embedded_texts = (self.embedder.usage.texts if hasattr(self.embedder, "usage") else 0) - usage_before
        stats.cache_hits, stats.cache_misses = cache.hits, cache.misses
        stats.seconds = round(time.perf_counter() - started, 3)
        return IngestReport(store=str(settings.store), stats=stats, files=files)

    def _ingest_file(
        self,
        path: Path,
        fingerprint: str,
        split_pipe: IngestionPipeline,
        parent_pipe: IngestionPipeline,
        writer: DocumentWriter,
        parents: ParentStore,
        stats: IngestStats,
        kinds: Counter[str],
    ) -> FileResult:
        doc_id = doc_id_for(path)
        old = parents.ledger_entry(doc_id)
        quick_hash = file_hash(path)
        if old and not old.get("pending") and old.get("content_hash") == quick_hash and old.get("fingerprint") == fingerprint:
            parents.clear_failure(doc_id)
            stats.parents += len(old["parents"])
            kinds.update(old.get("kinds", {}))
            return FileResult(path=str(path), doc_id=doc_id, status="unchanged", parents=len(old["parents"]))
        try:
            doc = load_document(path, self.settings.ingest.pdf_passwords, self.limits.max_file_bytes, self.limits.file_timeout)
        except LoadError as exc:
            logger.debug("failed %s", exc)
            return self._failed(parents, path, doc_id, exc.reason + (f"; {exc.hint}" if exc.hint else ""))
        content_hash = doc.metadata["content_hash"]
        try:
            parent_nodes = split_pipe.run(documents=[doc])
            nodes: list[BaseNode] = []
            for i, parent in enumerate(parent_nodes):
                misses = parent_pipe.cache.misses if parent_pipe.cache else 0
                nodes.extend(parent_pipe.run(nodes=[parent]))
                if parent_pipe.cache and parent_pipe.cache.misses == misses:
                    stats.parents_reused += 1
                else:
                    stats.parents_rebuilt += 1
                self.progress("parent", {"path": str(path), "done": i + 1, "total": len(parent_nodes)})
            entry = writer.write(doc_id, content_hash, fingerprint, nodes)
        except IngestError as exc:
            logger.debug("failed %s: %s", path, exc)
            return self._failed(parents, path, doc_id, f"{exc}; nothing was written, the next run retries it")
        parents.clear_failure(doc_id)
        stats.parents += len(entry["parents"])
        kinds.update(entry["kinds"])
        status = "added" if not old or "content_hash" not in old else "updated"
        return FileResult(path=str(path), doc_id=doc_id, status=status, parents=len(entry["parents"]))

    @staticmethod
    def _failed(parents: ParentStore, path: Path, doc_id: str, reason: str) -> FileResult:
        """Record the failure (``status`` lists it); the ledger is untouched, so the next run retries."""
        parents.record_failure(doc_id, str(path), reason, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return FileResult(path=str(path), doc_id=doc_id, status="failed", reason=reason)

    def _prune(self, roots: Sequence[Path], writer: DocumentWriter, parents: ParentStore, seen: list[Path]) -> list[FileResult]:
        """Remove documents under the given folders whose files no longer exist (never outside them)."""
        seen_ids = {doc_id_for(p) for p in seen}
        prefixes = [doc_id_for(r).rstrip("/") + "/" for r in roots if r.is_dir()]
        out = []
        for doc_id in sorted(parents.ledger()):
            if doc_id in seen_ids or not any(doc_id.startswith(p) for p in prefixes) or Path(doc_id).exists():
                continue
            writer.remove(doc_id)
            out.append(FileResult(path=doc_id, doc_id=doc_id, status="removed"))
        return out


def ingest(settings: Settings, paths: Sequence[Path], **kwargs: object) -> IngestReport:
    """Convenience wrapper: build an ``Ingestor`` from settings and run it."""
    return Ingestor(settings, **kwargs).run(paths)  # type: ignore[arg-type]
