"""The store's one writer lock (``<store>/ingest.lock``): ingest, enrich, ``docs rm``, repair and snapshots take it.

It lives in store/ because a snapshot (``store/snapshot.py``) must hold it too, and store/ may not
import ingest/. Queries never take it: the service keeps answering while a writer or a snapshot runs.
In fleet mode (``database.url``) it is a PostgreSQL advisory lock instead (store/state.py).
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Settings
from pipeline.store.state import LOCK_FILE, writer_lock

__all__ = ["LOCK_FILE", "store_lock"]


def store_lock(settings: Settings, timeout: float, shared: bool = False) -> Any:
    """The lock object (not yet acquired); creates the store folder, since the lock file lives in it.

    ``shared`` (fleet mode only): ingest workers share the lock; everything else holds it alone.
    """
    return writer_lock(settings, timeout, shared=shared)
