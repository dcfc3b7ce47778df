"""The persistent ingest cache: LlamaIndex's ``IngestionCache`` over SQLite, counting hits and misses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llama_index.core.ingestion import IngestionCache
from llama_index.core.schema import BaseNode
from pydantic import PrivateAttr

from pipeline.store.sqlite_kv import SQLiteKVStore


class CountingCache(IngestionCache):
    """An ``IngestionCache`` whose ``get`` counts hits and misses for the run summary."""

    _hits: int = PrivateAttr(default=0)
    _misses: int = PrivateAttr(default=0)

    @classmethod
    def open(cls, path: Path) -> "CountingCache":
        return cls(cache=SQLiteKVStore(path))

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    def get(self, key: str, collection: str | None = None) -> Sequence[BaseNode] | None:
        nodes = super().get(key, collection=collection)
        if nodes is None:
            self._misses += 1
        else:
            self._hits += 1
        return nodes
