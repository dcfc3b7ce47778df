"""The persistent ingest cache: LlamaIndex's ``IngestionCache`` over SQLite, counting hits and misses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llama_index.core.ingestion import IngestionCache
from llama_index.core.schema import BaseNode
from pydantic import PrivateAttr

from pipeline.config import Settings
from pipeline.store.sqlite_kv import SQLiteKVStore, llama_kv
from pipeline.store.state import CACHE_KV, open_kv


class CountingCache(IngestionCache):
    """An ``IngestionCache`` whose ``get`` counts hits and misses for the run summary."""

    _hits: int = PrivateAttr(default=0)
    _misses: int = PrivateAttr(default=0)

    @classmethod
    def open(cls, path: Path) -> "CountingCache":
        return cls(cache=llama_kv(SQLiteKVStore(path)))

    @classmethod
    def for_settings(cls, settings: Settings) -> "CountingCache":
        """The store's cache: ``cache.sqlite``, or in fleet mode its rows in PostgreSQL (store/state.py)."""
        return cls(cache=llama_kv(open_kv(settings, CACHE_KV)))

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
