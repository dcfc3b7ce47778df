"""qdrant-client local mode, as ``open_client`` hands it out: reads in parallel, each write alone.

Local mode keeps points in Python lists and numpy arrays that an upsert grows; a search in another
thread at that moment can see arrays of different lengths. Each backend owns its locking: the
embedded engine (edge) and a server take their own, and local mode gets this wrapper wherever it is
opened (the service searches from worker threads while an ingest job writes; a CLI process pays an
uncontended lock per call).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from qdrant_client import QdrantClient

UPLOAD_SLICE = 32  # points per locked write: a search waits for at most this many (~0.5 s embedded)
# QdrantClient methods that only read; any other method is treated as a write.
READ_METHODS = frozenset(
    {"query_points", "query_batch_points", "search", "search_batch", "scroll", "count", "retrieve", "get_collection", "get_collections", "collection_exists"}
)


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers, so steady searches cannot
    starve an ingest job."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writer and not self._readers)
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class SerializedClient:
    """An embedded-mode ``QdrantClient`` whose writes never overlap anything.

    Local mode keeps points in Python lists and numpy arrays that an upsert grows; a search in
    another thread at that moment can see arrays of different lengths. The service searches from
    worker threads while an ingest job writes, so reads (``READ_METHODS``) share a lock that writes
    hold alone. Reads stay parallel: a search is mostly numpy, which releases the GIL. Uploads are cut
    into slices of ``UPLOAD_SLICE`` points so searches are not stalled for a whole document.

    Example:
        client = SerializedClient(QdrantClient(path="store/qdrant"))
        client.query_points("docs_children", query=[...])  # same API; waits only for writes
    """

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self._lock = ReadWriteLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        mode = self._lock.read if name in READ_METHODS else self._lock.write

        @functools.wraps(attr)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with mode():
                return attr(*args, **kwargs)

        return locked

    def upload_points(self, collection_name: str, points: Any, **kwargs: Any) -> None:
        it = iter(points)
        while batch := list(islice(it, UPLOAD_SLICE)):
            with self._lock.write():
                self._client.upload_points(collection_name, batch, **kwargs)
