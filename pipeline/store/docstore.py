"""Parents on disk: LlamaIndex's ``KVDocumentStore`` over one SQLite file, looked up lazily by id.

Stock LlamaIndex code reads it with ``KVDocumentStore(SQLiteKVStore(path), namespace="parents")``.
The same file holds the ingest ledger (what each document last wrote), so parents and ledger change
in one SQLite transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.schema import BaseNode
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore

from pipeline.store.sqlite_kv import SQLiteKVStore

NAMESPACE = "parents"
LEDGER = "ledger"
FAILURES = "failures"


class ParentStore:
    """Parents by id plus the per-document ledger; every write batch is atomic.

    Example:
        store = ParentStore(Path("storage/docstore.sqlite"))
        parent = store.get(parent_id)  # one row read, nothing else loaded
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kv = SQLiteKVStore(path)
        self.docstore = KVDocumentStore(self.kv, namespace=NAMESPACE)
        self._data = f"{NAMESPACE}/data"

    def get(self, parent_id: str) -> BaseNode | None:
        return self.docstore.get_node(parent_id, raise_error=False)

    def put(self, parents: Sequence[BaseNode]) -> None:
        with self.kv.transaction():
            self.docstore.add_documents(list(parents), allow_update=True)

    def delete(self, parent_ids: Sequence[str]) -> None:
        with self.kv.transaction():
            for pid in parent_ids:
                if self.docstore.document_exists(pid):
                    self.docstore.delete_document(pid, raise_error=False)

    def ids(self) -> list[str]:
        return self.kv.keys(self._data)

    def count(self) -> int:
        return self.kv.count(self._data)

    # The ledger: doc_id -> {"content_hash", "parents": [...], "refs": {collection: [...]}, "pending": {...}}
    def ledger(self) -> dict[str, dict[str, Any]]:
        return self.kv.get_all(LEDGER)

    def ledger_entry(self, doc_id: str) -> dict[str, Any] | None:
        return self.kv.get(doc_id, LEDGER)

    def put_ledger(self, doc_id: str, entry: dict[str, Any]) -> None:
        self.kv.put(doc_id, entry, LEDGER)

    def delete_ledger(self, doc_id: str) -> None:
        self.kv.delete(doc_id, LEDGER)

    # Failures: doc_id -> {"path", "reason", "attempts", "at"}; cleared when the document lands.
    def record_failure(self, doc_id: str, path: str, reason: str, at: str) -> None:
        old = self.kv.get(doc_id, FAILURES) or {}
        self.kv.put(doc_id, {"path": path, "reason": reason, "attempts": old.get("attempts", 0) + 1, "at": at}, FAILURES)

    def clear_failure(self, doc_id: str) -> None:
        self.kv.delete(doc_id, FAILURES)

    def failures(self) -> dict[str, dict[str, Any]]:
        return self.kv.get_all(FAILURES)

    def close(self) -> None:
        self.kv.close()
