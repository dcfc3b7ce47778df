"""``docs rm`` and ``DELETE /documents/{name}``: remove documents by name, under the ingest lock and the ledger protocol.

Writes to a store are serialised by one lock (``<store>/ingest.lock``, the one ``ingest`` and ``enrich``
hold), so a removal never interleaves with an ingest job of the service or another process. Every name
is resolved before anything changes: one unknown name among several removes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from filelock import Timeout
from qdrant_client import QdrantClient

from pipeline.config import Settings
from pipeline.errors import StoreLocked
from pipeline.ingest.run import store_lock
from pipeline.ingest.write import DocumentWriter
from pipeline.store import qdrant as qstore
from pipeline.store.documents import Catalog, Removed, remove_document
from pipeline.store.state import open_parents

logger = logging.getLogger(__name__)


def remove_names(settings: Settings, names: Sequence[str], client: QdrantClient | None = None, lock_timeout: float = 0.0) -> list[Removed]:
    """Remove the documents ``names`` stand for (names, doc ids or paths); returns what happened to each.

    Args:
        client: an open client to use (the service's); opened and closed here when None.
        lock_timeout: seconds to wait for a running ingest to release the store.

    Raises:
        UnknownDocument: a name matches nothing or more than one document (nothing was changed).
        StoreUnavailable: no store at ``settings.store``; StoreLocked: an ingest holds it.
    """
    catalog = Catalog.read(settings)
    doc_ids = list(dict.fromkeys(catalog.resolve(n) for n in names))
    lock = store_lock(settings, lock_timeout)
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout as exc:
        raise StoreLocked(f"an ingest is writing to {settings.store} (lock {lock.lock_file}); wait for it, or retry with --lock-timeout") from exc
    try:
        own = client is None
        client = client or qstore.open_client(settings)
        parents = open_parents(settings)
        try:
            writer = DocumentWriter(client, qstore.names(settings), parents)
            done = [remove_document(writer, parents, d) for d in doc_ids]
            if any(r.content == "removed" for r in done):
                qstore.optimize(client)
        finally:
            parents.close()
            if own:
                client.close()
    finally:
        lock.release()
    for r in done:
        logger.debug("removed %s (%s): content %s", r.name, r.doc_id, r.content)
    return done
