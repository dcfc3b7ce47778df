"""Move a store written by qdrant-client's local mode into the embedded engine (``pipeline migrate --to edge``).

Nothing is re-embedded and no source file is needed: every point is copied with its id, payload (the
LlamaIndex node), dense and BM25 vectors, and every collection with its metadata (embedding model
and dimension). Order, so a run stopped anywhere leaves a store that opens as before:

1. the new shards are written to ``<store>/.edge.migrating-<pid>`` (a leftover one is removed);
2. counts are compared per collection; any difference stops here and removes the temp folder;
3. the temp folder is renamed to ``<store>/edge`` (from now on the store opens in edge);
4. ``<store>/qdrant`` is renamed ``<store>/qdrant.migrated-<UTC timestamp>``: kept, never read again,
   so a user can go back (delete ``edge``, rename the folder to ``qdrant``) or delete it once happy.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable

from filelock import FileLock, Timeout
from pydantic import BaseModel
from qdrant_client import QdrantClient

from pipeline.config import QdrantBackend, Settings
from pipeline.errors import StoreError, StoreLocked
from pipeline.store import qdrant as qstore

logger = logging.getLogger(__name__)

PAGE = 512
ProgressFn = Callable[[str, int, int], None]


class MigrationReport(BaseModel):
    """What ``migrate --to edge`` did: points per collection (verified equal in both) and where the old folder went."""

    store: str
    collections: dict[str, int]
    edge: str
    old_qdrant: str
    seconds: float


def migrate_to_edge(settings: Settings, progress: ProgressFn | None = None) -> MigrationReport:
    """Copy every collection of the local-mode store at ``<store>/qdrant`` into edge shards.

    Raises:
        StoreError: ``<store>/edge`` exists already, or there is nothing to migrate, or counts differ.
        StoreLocked: an ingest or another process (a running service) has the store open.
    """
    started = time.perf_counter()
    edge_path, local_path = settings.edge_path, settings.qdrant_path
    if edge_path.exists():
        raise StoreError(f"{edge_path} exists already: this store is an edge store (nothing to migrate; remove {edge_path} first to redo it)")
    if not qstore.has_local_collections(settings):
        raise StoreError(f"no local-mode collections in {local_path}: nothing to migrate")
    lock = FileLock(str(settings.store / "ingest.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise StoreLocked(f"an ingest is writing to {settings.store} (lock {lock.lock_file}): wait for it, then migrate") from exc
    try:
        from pipeline.store.edge import EdgeClient

        for stale in settings.store.glob(".edge.migrating-*"):
            logger.warning("removing %s, left by a migration that stopped", stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = settings.store / f".edge.migrating-{int(time.time())}"
        source = qstore.open_client(settings.with_overrides(qdrant=settings.qdrant.model_copy(update={"backend": QdrantBackend.LOCAL, "url": None})))
        try:
            target = EdgeClient(tmp, keyword_indexes=qstore.PAYLOAD_INDEXES)
            try:
                counts = {c.name: _copy(source, target, c.name, progress) for c in source.get_collections().collections}
                target.optimize()
            finally:
                target.close()  # flushes
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            source.close()
        tmp.replace(edge_path)
        old = local_path.with_name(f"qdrant.migrated-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        local_path.replace(old)
        logger.info("migrated %s to edge: %s; the local-mode folder is kept as %s", settings.store, counts, old)
        return MigrationReport(
            store=str(settings.store), collections=counts, edge=str(edge_path), old_qdrant=str(old), seconds=round(time.perf_counter() - started, 3)
        )
    finally:
        lock.release()


def _copy(source: QdrantClient, target: QdrantClient, name: str, progress: ProgressFn | None) -> int:
    """One collection, in pages; returns its point count after checking both sides agree."""
    info = source.get_collection(name)
    target.create_collection(
        name, vectors_config=info.config.params.vectors, sparse_vectors_config=info.config.params.sparse_vectors, metadata=info.config.metadata
    )
    total = source.count(name, exact=True).count
    done = 0
    offset = None
    while True:
        points, offset = source.scroll(name, limit=PAGE, offset=offset, with_payload=True, with_vectors=True)
        if points:
            target.upload_points(name, points=points, batch_size=PAGE)
            done += len(points)
            if progress is not None:
                progress(name, done, total)
        if offset is None:
            break
    copied = target.count(name, exact=True).count
    if copied != total or done != total:
        raise StoreError(f"migrating collection {name}: {total} points in local mode, {done} read, {copied} in edge; nothing was changed")
    return copied
