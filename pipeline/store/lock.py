"""The store's one writer lock (``<store>/ingest.lock``): ingest, enrich, ``docs rm``, repair and snapshots take it.

It lives in store/ because a snapshot (``store/snapshot.py``) must hold it too, and store/ may not
import ingest/. Queries never take it: the service keeps answering while a writer or a snapshot runs.
"""

from __future__ import annotations

from filelock import FileLock

from pipeline.config import Settings

LOCK_FILE = "ingest.lock"


def store_lock(settings: Settings, timeout: float) -> FileLock:
    """The lock object (not yet acquired); creates the store folder, since the lock file lives in it."""
    settings.store.mkdir(parents=True, exist_ok=True)
    return FileLock(str(settings.store / LOCK_FILE), timeout=timeout)
