"""Ingest: files → parents → references → embeddings (cached) → docstore + Qdrant, in two phases.

Phase 1, one document at a time: split into parents, chunk and self references, embed, commit. A
document is searchable as soon as its own commit is done (seconds), whatever the LLM is.
Phase 2 (``pipeline/ingest/enrich.py``): summaries and questions for the searchable parents, one
parent at a time; ``ingest`` runs it after phase 1 when ``ingest.enrich`` says so, ``pipeline enrich``
at any later time.

``IngestionPipeline`` runs share one persistent cache: one splits a document into parents, one turns
a single parent into its references, one enriches a parent. Caching per parent means that when one
page of a long PDF changes, only the parents whose text changed miss the cache.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import LLM
from llama_index.core.schema import BaseNode, TransformComponent
from qdrant_client import QdrantClient

from pipeline.config import EnrichPolicy, Settings
from pipeline.errors import IngestError, LoadError, StoreLocked
from pipeline.ingest.cache import CountingCache
from pipeline.ingest.fingerprint import fingerprint, phase1_transforms, store_embedder
from pipeline.ingest.enrich import EnrichmentPhase, ParentEnricher, enriched_count
from pipeline.ingest.load import PAGE_OFFSETS, load_document, read_source
from pipeline.ingest.fleet import chores, claimed
from pipeline.ingest.plan import prune_candidates
from pipeline.ingest.quick import remember
from pipeline.ingest.scan import ScanLimits, scan
from pipeline.store.lock import store_lock  # noqa: F401 (re-exported: ingest/remove.py and repair.py take it from here)
from pipeline.ingest.write import DocumentWriter
from pipeline.models import FileResult, IngestReport, IngestStats
from pipeline.providers.embeddings import build_embedder, embed_dim
from pipeline.providers.llm import build_llm, llm_calls, llm_is_capable
from pipeline.store import qdrant as qstore
from pipeline.store.check import check_store
from pipeline.store.docstore import ParentStore
from pipeline.store.state import fleet, open_parents
from pipeline.store.layout import Collection
from pipeline.store.documents import IngestNames, remove_document
from pipeline.store.ledger import Change, Op, total_refs
from pipeline.store.layout import doc_id_for
from pipeline.store.migrate import add_sparse_vectors, migrate_parent_refs

logger = logging.getLogger(__name__)

# Called with (event, detail): "file" before each file, "parent" after each parent, "done" per file,
# then "enrich" after each parent of the second phase ({"done", "total", "path"}).
ProgressFn = Callable[[str, dict], None]


def _noop(event: str, detail: dict) -> None:
    return None


def enrich_during_ingest(settings: Settings) -> bool:
    """Whether ``ingest`` runs the second phase: ``now``, or ``auto`` with an LLM whose references help."""
    policy = settings.ingest.enrich
    if policy is EnrichPolicy.NOW:
        return True
    return policy is EnrichPolicy.AUTO and llm_is_capable(settings)


def mark_damaged(client: QdrantClient, collections: dict[Collection, str], parents: ParentStore) -> list[str]:
    """Mark for rebuild the documents whose references are not all in the engine; returns them.

    So ``ingest`` never calls a document unchanged whose references are gone (a collection folder
    moved aside, a lost write). Cheap when all is well: one count per collection against the
    ledger's totals; only when they differ are the point ids compared (``check_store``, read-only).
    """
    ledger = parents.ledger()
    listed = total_refs(ledger.values())
    counts = {c.value: qstore.count_points(client, n) for c, n in collections.items()}
    if counts == listed:
        return []
    report = check_store(client, collections, parents)
    marked = []
    for doc_id in report.rebuild:
        entry = ledger.get(doc_id)
        if entry is not None and not entry.rebuild:
            parents.put_ledger(doc_id, entry.model_copy(update={"rebuild": True}))
            marked.append(doc_id)
    if marked:
        logger.warning("%d documents have references missing from the store (%s): ingesting them again", len(marked), ", ".join(marked))
    return marked


def finish_removals(writer: DocumentWriter, parents: ParentStore, keep: set[str]) -> list[str]:
    """Finish removals a killed run left (``pending.op`` remove), except of documents this run writes anyway."""
    done = []
    for doc_id, entry in parents.ledger().items():
        if entry.pending is not None and entry.pending.op is Op.REMOVE and doc_id not in keep:
            writer.remove(doc_id)
            done.append(doc_id)
    if done:
        logger.info("finished %d interrupted removals: %s", len(done), ", ".join(done))
    return done


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
        enrich: bool | None = None,
        rehash: bool = False,
    ) -> None:
        """``enrich``: run the second phase in ``run()``; None = as ``ingest.enrich`` says (see ``enrich_during_ingest``).
        ``rehash``: read and hash every file, also those the ledger records as last seen (``file_stat``)."""
        self.rehash = rehash
        if embedder is None:  # ours to build: on every core this process may use (embed.threads=0, auto)
            settings = settings.model_copy(update={"embed": settings.embed.model_copy(update={"threads": settings.embed.ingest_threads()})})
        self.settings = settings
        self.limits = limits or ScanLimits()  # the service's ingest roots and caps; none for the CLI
        self.client = client  # an open client to reuse (the service's embedded one); left open after a run
        self.embedder = embedder or build_embedder(settings)
        self._own_embedder = embedder is None
        self.enrich = enrich_during_ingest(settings) if enrich is None else enrich
        self.llm = llm if llm is not None else (build_llm(settings) if self.enrich else None)
        self.progress = progress
        self.lock_timeout = lock_timeout

    def _transforms(self, dim: int) -> tuple[list[TransformComponent], list[TransformComponent]]:
        return phase1_transforms(self.settings, self.embedder, dim)

    fingerprint = staticmethod(fingerprint)

    def _follow_store_model(self, client: Any) -> bool:
        """Use the embedding model the store was built with unless the settings name one (True if changed)."""
        if not self._own_embedder:
            return False
        other = store_embedder(self.settings, client, self.embedder)
        if other is None:
            return False
        self.embedder = other
        return True

    def phase1_fingerprint(self, client: Any | None = None) -> str:
        """The fingerprint the ledger records for phase 1 (following the store's model, given a client);
        ``ingest --dry-run`` compares it as the real run does."""
        if client is not None:
            self._follow_store_model(client)
        split, per_parent = self._transforms(embed_dim(self.embedder))
        return self.fingerprint(split + per_parent)

    def output_fingerprint(self) -> str:
        """The fingerprint of this ingestor's transforms (models, prompts, sizes), without touching a store.

        Two ingestors with the same fingerprint write the same parents and references; ``eval`` uses
        it to name an isolated store per dataset and configuration.
        """
        dim = embed_dim(self.embedder)
        split, per_parent = self._transforms(dim)
        if self.enrich and self.llm is not None:  # the summaries and questions shape the store too
            per_parent = per_parent + [ParentEnricher(llm_name=self.llm.metadata.model_name, num_questions=self.settings.ingest.questions)]
        return self.fingerprint(split + per_parent)

    def _acquire(self, alone: bool = False) -> FileLock:
        lock = store_lock(self.settings, self.lock_timeout, shared=fleet(self.settings) and not alone)  # fleet: workers run side by side
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
        return lock

    def run(self, paths: Sequence[Path], prune: bool = False) -> IngestReport:
        """Ingest files and folders; with ``prune``, also remove documents under the given folders
        whose files are gone.

        Raises:
            StoreLocked: another ingest holds the store (after ``lock_timeout`` seconds).
            StoreUnavailable / ModelMismatch: fatal store problems; per-file problems are reported instead.
        """
        started = time.perf_counter()
        lock = self._acquire()
        try:
            return self._run_locked(paths, prune, started)
        finally:
            lock.release()

    def enrich_store(self, llm: LLM | None = None) -> IngestReport:
        """The second phase alone, over every document of the store (``pipeline enrich``).

        Resumable and idempotent: parents enriched by an earlier pass with the same LLM and prompts
        are skipped; an interrupted pass loses at most the parent in flight (its LLM output is cached).

        Raises:
            ConfigError: no LLM configured.
            StoreLocked: another ingest or enrich holds the store.
        """
        from pipeline.errors import ConfigError

        llm = llm or self.llm or build_llm(self.settings)
        if llm is None:
            raise ConfigError("enrich needs an LLM (llm.provider is none): set PIPELINE_LLM__PROVIDER, e.g. llamacpp or openai")
        started = time.perf_counter()
        stats = IngestStats()
        usage_before = self.embedder.usage.texts if hasattr(self.embedder, "usage") else 0
        lock = self._acquire()  # fleet: enrich workers share the lock and claim parents (ingest/enrich.py)
        try:
            client = self.client or qstore.open_client(self.settings)
            if self._follow_store_model(client):
                usage_before = 0
            parents = open_parents(self.settings)
            cache = CountingCache.for_settings(self.settings)
            try:
                dim = embed_dim(self.embedder)
                collections = qstore.ensure_collections(client, self.settings, self.embedder.model_name, dim)
                writer = DocumentWriter(client, collections, parents)
                doc_ids = sorted(parents.ledger())
                self._enrich_phase(llm, dim, cache, writer, doc_ids, stats)
                if stats.parents_enriched:
                    writer.timed(qstore.optimize, client)  # edge: build HNSW once after the bulk writes
                stats.store_seconds = round(writer.store_seconds, 3)
                ledger = parents.ledger()
                stats.documents = len(ledger)
                stats.parents = sum(len(e.parents) for e in ledger.values())
                kinds: Counter[str] = Counter()
                for e in ledger.values():
                    kinds.update(e.kinds)
                stats.references = dict(sorted(kinds.items()))
            finally:
                parents.close()
                if self.client is None:
                    client.close()
        finally:
            lock.release()
        stats.embedded_texts = (self.embedder.usage.texts if hasattr(self.embedder, "usage") else 0) - usage_before
        stats.cache_hits, stats.cache_misses = cache.hits, cache.misses
        stats.seconds = round(time.perf_counter() - started, 3)
        return IngestReport(store=str(self.settings.store), stats=stats)

    def _enrich_phase(self, llm: LLM, dim: int, cache: CountingCache, writer: DocumentWriter, doc_ids: list[str], stats: IngestStats) -> None:
        phase = EnrichmentPhase(llm, self.embedder, dim, cache, writer, self.settings.ingest.questions, self.progress, self.settings)
        result = phase.run(doc_ids)
        stats.enrich = "done"
        stats.parents_enriched += result.parents_enriched
        stats.parents_unenriched = result.parents_total - result.parents_skipped - result.parents_enriched
        stats.summaries += result.summaries
        stats.questions += result.questions
        stats.llm_calls += result.llm_calls

    def _run_locked(self, paths: Sequence[Path], prune: bool, started: float) -> IngestReport:
        settings = self.settings
        stats = IngestStats()
        files: list[FileResult] = []
        usage_before = self.embedder.usage.texts if hasattr(self.embedder, "usage") else 0
        llm_before = llm_calls(self.llm)
        client = self.client or qstore.open_client(settings)
        if self._follow_store_model(client):
            usage_before = 0
        parents = open_parents(settings)
        cache = CountingCache.for_settings(settings)
        try:
            dim = embed_dim(self.embedder)
            collections = qstore.ensure_collections(client, settings, self.embedder.model_name, dim)
            migrate_parent_refs(client, collections, parents)
            add_sparse_vectors(client, collections)  # a store from before hybrid search: no re-embedding
            writer = DocumentWriter(client, collections, parents)
            if not fleet(settings):  # fleet: other workers' writes in flight would look like damage; `check --repair` does it alone
                mark_damaged(client, collections, parents)
            split, per_parent = self._transforms(dim)
            fingerprint = self.fingerprint(split + per_parent)
            remember(settings, self.embedder.model_name, fingerprint)  # for the next run with nothing to do (ingest/quick.py)
            split_pipe = IngestionPipeline(transformations=split, cache=cache)
            parent_pipe = IngestionPipeline(transformations=per_parent, cache=cache)
            kinds: Counter[str] = Counter()
            found = self.scanned = scan(paths, self.limits)  # _ingest_file reads each file as this scan saw it
            if found.over_limit:  # all or nothing: a partial run would stop at the same file every time
                raise IngestError(f"over limit: more than {self.limits.max_files} files in one ingest (service.ingest_max_files); "
                                  "nothing was ingested: ingest fewer folders or sub-folders per request, or raise the limit")
            for skipped in found.skipped:  # files the scan did not let through, each with its reason
                files.append(FileResult(path=skipped.path, status="failed", reason=skipped.reason))
                self.progress("done", {"path": skipped.path, "status": "failed", "reason": skipped.reason})
            for skipped in found.unsupported:  # named, not failed: a folder may hold other kinds of files
                files.append(FileResult(path=skipped.path, status="skipped", reason=skipped.reason))
                self.progress("done", {"path": skipped.path, "status": "skipped", "reason": skipped.reason})
            sources = found.files
            with chores(settings) as mine:  # fleet: one worker finishes interrupted removals
                if mine:
                    finish_removals(writer, parents, {doc_id_for(p) for p in sources})
            self.names = IngestNames(parents.ledger(), paths, fingerprint)  # names and same-content aliases (issue 23)
            for path in claimed(settings, sources) if fleet(settings) else sources:  # fleet: documents other workers hold are theirs
                self.progress("file", {"path": str(path), "total": len(sources)})
                result = self._ingest_file(path, fingerprint, split_pipe, parent_pipe, writer, parents, stats, kinds)
                files.append(result)
                self.progress("done", {"path": str(path), "status": result.status, "reason": result.reason})
            if prune:
                with chores(settings) as mine:  # fleet: --sync pruning runs once, under an advisory lock
                    if mine:
                        files.extend(self._prune(paths, writer, parents, sources))
            # Phase 2: every document above is searchable already; now its summaries and questions.
            searchable = [f.doc_id for f in files if f.status in ("added", "updated", "unchanged")]
            if self.enrich and self.llm is not None and searchable:
                self._enrich_phase(self.llm, dim, cache, writer, searchable, stats)
                kinds = Counter()
                for doc_id in searchable:
                    if (done := parents.ledger_entry(doc_id)) is not None:
                        kinds.update(done.kinds)
            else:
                stats.enrich = "none" if self.settings.llm.provider.value == "none" else (
                    "later" if self.settings.ingest.enrich is EnrichPolicy.LATER or self.enrich else "skipped")
                entries = [e for d in searchable if (e := parents.ledger_entry(d)) is not None]
                stats.parents_unenriched = sum(len(e.parents) for e in entries) - enriched_count(entries)
            if stats.parents_enriched or any(f.status in ("added", "updated", "removed") for f in files):
                writer.timed(qstore.optimize, client)  # edge: build HNSW once after the bulk writes, not per document
            stats.store_seconds = round(writer.store_seconds, 3)
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
        seen = self.scanned.stats.get(path)
        if old is not None and not self.rehash and old.unchanged(old.known_hash(seen), fingerprint):  # as last seen: not even read
            return self._unchanged(parents, path, doc_id, old, seen, stats, kinds)
        try:  # one open (no links followed under the roots): the hash and the parse use these same bytes
            data = read_source(path, self.limits, self.scanned.identity.get(path))
        except LoadError as exc:
            logger.debug("failed %s", exc)
            return self._failed(parents, path, doc_id, exc.reason + (f"; {exc.hint}" if exc.hint else ""))
        quick_hash = hashlib.sha256(data).hexdigest()
        if old is not None and old.unchanged(quick_hash, fingerprint):
            return self._unchanged(parents, path, doc_id, old, seen, stats, kinds)
        if (owner := self.names.owner_of(quick_hash, doc_id)) is not None:  # same bytes as an indexed document
            alias = self.names.alias_entry(path, doc_id, old, quick_hash, len(data), owner).model_copy(update={"file_stat": seen})
            writer.apply(doc_id, Change(Op.WRITE, final=alias))  # owns nothing; drops what the file held before
            parents.clear_failure(doc_id)
            owner_name = parents.ledger_entry(owner).name if parents.ledger_entry(owner) else None
            return FileResult(path=str(path), doc_id=doc_id, status="added" if old is None else "updated",
                              reason=f"same content as {owner_name or owner}: recorded as another name of it, nothing embedded")
        try:
            doc = load_document(path, self.settings.ingest.pdf_passwords, timeout=self.limits.file_timeout, data=data)
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
            entry = self.names.stamp(parents, path, doc_id, old, entry, len(data), seen)
            # Where each page starts, so an extractive answer cites a sentence's own page (retrieve/extract.py).
            parents.put_page_offsets(doc_id, doc.metadata.get(PAGE_OFFSETS) or [0])
        except IngestError as exc:
            logger.debug("failed %s: %s", path, exc)
            return self._failed(parents, path, doc_id, f"{exc}; nothing was written, the next run retries it")
        parents.clear_failure(doc_id)
        stats.parents += len(entry.parents)
        kinds.update(entry.kinds)
        status = "added" if old is None or not old.parents else "updated"
        return FileResult(path=str(path), doc_id=doc_id, status=status, parents=len(entry.parents))

    def _unchanged(
        self, parents: ParentStore, path: Path, doc_id: str, old: Any, seen: tuple[int, int, int, int] | None, stats: IngestStats, kinds: Counter[str]
    ) -> FileResult:
        """Nothing to write: name it if it has no name yet, and record the file as seen now (so the next
        run skips it without reading), in one ledger write, only if either changed."""
        self.names.keep(parents, path, doc_id, old)
        if seen is not None and old.file_stat != seen and (now := parents.ledger_entry(doc_id)) is not None:
            parents.put_ledger(doc_id, now.model_copy(update={"file_stat": seen}))
        parents.clear_failure(doc_id)
        stats.parents += len(old.parents)
        kinds.update(old.kinds)
        return FileResult(path=str(path), doc_id=doc_id, status="unchanged", parents=len(old.parents))

    @staticmethod
    def _failed(parents: ParentStore, path: Path, doc_id: str, reason: str) -> FileResult:
        """Record the failure (``status`` lists it); the ledger is untouched, so the next run retries."""
        parents.record_failure(doc_id, str(path), reason, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return FileResult(path=str(path), doc_id=doc_id, status="failed", reason=reason)

    def _prune(self, roots: Sequence[Path], writer: DocumentWriter, parents: ParentStore, seen: list[Path]) -> list[FileResult]:
        """Remove documents under the given folders whose files no longer exist (never outside them)."""
        out = []
        for doc_id in prune_candidates(roots, parents.ledger(), {doc_id_for(p) for p in seen}):
            remove_document(writer, parents, doc_id)  # content another name still needs stays
            out.append(FileResult(path=doc_id, doc_id=doc_id, status="removed"))
        return out


def ingest(settings: Settings, paths: Sequence[Path], **kwargs: object) -> IngestReport:
    """Convenience wrapper: build an ``Ingestor`` from settings and run it."""
    return Ingestor(settings, **kwargs).run(paths)  # type: ignore[arg-type]
