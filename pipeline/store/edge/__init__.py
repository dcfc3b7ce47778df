"""Embedded Qdrant engine (qdrant-edge) behind qdrant-client's API: the store's default backend.

``EdgeEngine`` (``engine.py``) is the engine: what ``open_client`` returns, and all a query process
uses (lean reads, no qdrant-client). ``EdgeClient`` is a real ``qdrant_client.QdrantClient`` whose inner ``_client`` is ``EdgeStore``, an
implementation of qdrant-client's ``QdrantBase`` over ``qdrant_edge.EdgeShard`` (as
``qdrant_client.local.QdrantLocal`` implements it over numpy). So LlamaIndex's ``QdrantVectorStore``,
``pipeline/store/qdrant.py``, ``migrate``, ``check``, ``status``, ingest and retrieval all run
unchanged on it; only ``open_client`` chooses. This is the only module that imports ``qdrant_edge``
(a beta library whose API changed between 0.5, 0.7 and 0.9: pinned exactly in pyproject.toml).

Layout under ``<store>/edge/``::

    .lock                   held (flock) by the process that has the store open
    <collection>/           one EdgeShard per collection (segments/, wal/, edge_config.json)
    <collection>/collection.json   our sidecar: vector config and collection metadata
                                   (qdrant-edge keeps no collection metadata of its own)

A collection is built in ``.<collection>.creating-<pid>`` (shard, payload indexes, sidecar) and
renamed into place, so a crash while creating leaves only a temp folder, removed on the next open;
a collection folder without its sidecar is reported as damaged, never guessed at.

Only what this package and LlamaIndex's ``QdrantVectorStore`` call is implemented; every other
``QdrantBase`` method raises ``NotImplementedError`` naming itself.

Example::

    client = EdgeClient(Path("store/edge"))
    client.create_collection("docs_children", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    client.upsert("docs_children", points=[models.PointStruct(id=str(uuid4()), vector=[...], payload={})])
    hits = client.query_points("docs_children", query=[...], limit=5).points
    client.close()  # flushes
"""

from typing import Any

from pipeline.store.edge.engine import EdgeEngine
from pipeline.store.edge.tuning import SIDECAR, auto_ef

__all__ = ["EdgeClient", "EdgeEngine", "EdgeStore", "SIDECAR", "auto_ef"]


def __getattr__(name: str) -> Any:
    """``EdgeClient`` and ``EdgeStore`` import qdrant-client (~0.6 s): loaded when first asked for."""
    if name in ("EdgeClient", "EdgeStore"):
        from pipeline.store.edge import client

        return getattr(client, name)
    raise AttributeError(name)
