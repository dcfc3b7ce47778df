"""Parents on disk: LlamaIndex's ``KVDocumentStore`` over one SQLite file, looked up lazily by id.

Stock LlamaIndex code reads it with ``KVDocumentStore(SQLiteKVStore(path), namespace="parents")``.
The same file holds the ingest ledger (what each document last wrote), so parents and ledger change
in one SQLite transaction. ``LedgerReader`` reads the ledger, failures and parent count with plain
``sqlite3``: ``status`` then needs no LlamaIndex, whose import alone takes ~0.7 s.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import DOCSTORE_FILE as DOCSTORE  # the file name inside a store folder (defined in config)
from pipeline.errors import sqlite_error
from pipeline.store import layout

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

    from pipeline.store.ledger import LedgerEntry

__all__ = ["DOCSTORE", "FAILURES", "LEDGER", "NAMESPACE", "PAGE_OFFSETS", "SELF_REFS", "LedgerReader", "ParentStore"]

NAMESPACE = "parents"
LEDGER = "ledger"
FAILURES = "failures"
PAGE_OFFSETS = layout.PAGE_OFFSETS  # doc_id -> {"offsets": [char offset where each page starts]}
# A parent's self-reference (its point in the parents collection, id ``layout.ref_id_for(parent,
# PARENT, 0)``) -> {"parent_id": parent}, written with the parent. Retrieval reads the parents of its
# hits there in one indexed query, instead of hashing every parent id of the store once per process
# (0.18 s at the first retrieve of a 17k-parent, 300k-reference store) or reading the engine's payloads.
SELF_REFS = f"{NAMESPACE}/self_refs"


class ParentStore:
    """Parents by id plus the per-document ledger; every write batch is atomic.

    Example:
        store = ParentStore(Path("storage/docstore.sqlite"))
        parent = store.get(parent_id)  # one row read, nothing else loaded
    """

    def __init__(self, path: Path | str, kv: Any = None) -> None:
        """``kv``: another KV under the same format (``PostgresKV`` in fleet mode, store/state.py); None = the SQLite file."""
        from pipeline.store.sqlite_kv import SQLiteKVStore

        self.path = path
        self.kv = kv if kv is not None else SQLiteKVStore(path)
        self._data = f"{NAMESPACE}/data"

    @functools.cached_property
    def docstore(self) -> Any:
        """LlamaIndex's ``KVDocumentStore`` over ``kv``, built on first use: a query reads rows through
        ``kv`` and never imports LlamaIndex (retrieve/read.py); writes and node reads go through this."""
        from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore

        from pipeline.store.sqlite_kv import llama_kv

        return KVDocumentStore(llama_kv(self.kv), namespace=NAMESPACE)

    def get(self, parent_id: str) -> BaseNode | None:
        return self.docstore.get_node(parent_id, raise_error=False)

    def get_many(self, parent_ids: Sequence[str]) -> dict[str, BaseNode]:
        """The parents of ``parent_ids`` that exist, by id, read in one SQL query (as ``get`` reads one)."""
        from llama_index.core.storage.docstore.utils import json_to_doc

        rows = self.kv.get_many(list(parent_ids), self._data)
        return {pid: json_to_doc(data) for pid, data in rows.items()}

    def put(self, parents: Sequence[BaseNode]) -> None:
        with self.kv.transaction():
            self.docstore.add_documents(list(parents), allow_update=True)
            self.kv.put_all([(_self_ref(p.node_id), {"parent_id": p.node_id}) for p in parents], SELF_REFS)

    def delete(self, parent_ids: Sequence[str]) -> None:
        with self.kv.transaction():
            for pid in parent_ids:
                if self.docstore.document_exists(pid):
                    self.docstore.delete_document(pid, raise_error=False)
                self.kv.delete(_self_ref(pid), SELF_REFS)

    def unindexed(self) -> list[str]:
        """Parents without their ``SELF_REFS`` row (written before it)."""
        indexed = {row["parent_id"] for row in self.kv.get_all(SELF_REFS).values()}
        return sorted(set(self.ids()) - indexed)

    def index_self_refs(self, parent_ids: Sequence[str]) -> None:
        """Write the ``SELF_REFS`` rows of ``parent_ids`` (``check --repair`` for an older store)."""
        self.kv.put_all([(_self_ref(pid), {"parent_id": pid}) for pid in parent_ids], SELF_REFS)

    def parents_of_self_refs(self, ref_ids: Sequence[str]) -> dict[str, str]:
        """The parent of each given self-reference id the store knows (``SELF_REFS``), in one query."""
        return {rid: row["parent_id"] for rid, row in self.kv.get_many(list(ref_ids), SELF_REFS).items()}

    def ids(self) -> list[str]:
        return self.kv.keys(self._data)

    def count(self) -> int:
        return self.kv.count(self._data)

    # The ledger: doc_id -> LedgerEntry (store/ledger.py), stored as JSON.
    def ledger(self) -> dict[str, LedgerEntry]:
        from pipeline.store.ledger import LedgerEntry

        return {doc: LedgerEntry.model_validate(raw) for doc, raw in self.kv.get_all(LEDGER).items()}

    def raw_ledger(self) -> dict[str, dict[str, Any]]:
        """The stored JSON as it is (the layout migration reads what older versions wrote)."""
        return self.kv.get_all(LEDGER)

    def ledger_entry(self, doc_id: str) -> LedgerEntry | None:
        from pipeline.store.ledger import LedgerEntry

        return LedgerEntry.load(self.kv.get(doc_id, LEDGER))

    def put_ledger(self, doc_id: str, entry: LedgerEntry | dict[str, Any]) -> None:
        self.kv.put(doc_id, entry if isinstance(entry, dict) else entry.dump(), LEDGER)

    def delete_ledger(self, doc_id: str) -> None:
        self.kv.delete(doc_id, LEDGER)

    def put_page_offsets(self, doc_id: str, offsets: Sequence[int]) -> None:
        """Where each page of a document starts, so an extractive answer cites a sentence's own page."""
        self.kv.put(doc_id, {"offsets": list(offsets) or [0]}, PAGE_OFFSETS)

    def page_offsets(self, doc_id: str) -> list[int] | None:
        row = self.kv.get(doc_id, PAGE_OFFSETS)
        return None if row is None else list(row.get("offsets") or [0])

    def delete_document_rows(self, doc_id: str) -> None:
        """The last step of a removal: the ledger entry and the page offsets, in one transaction."""
        with self.kv.transaction():
            self.kv.delete(doc_id, LEDGER)
            self.kv.delete(doc_id, PAGE_OFFSETS)
            self.kv.delete(doc_id, FAILURES)

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


def _self_ref(parent_id: str) -> str:
    from pipeline.models import RefKind
    from pipeline.store.layout import ref_id_for

    return ref_id_for(parent_id, RefKind.PARENT, 0)


class LedgerReader:
    """The ledger, failures and parent count of a docstore, read with plain ``sqlite3`` (no LlamaIndex).

    Same answers as ``ParentStore.ledger()``, ``.failures()`` and ``.count()``; writes nothing and
    creates nothing. Errors are PipelineErrors naming the file (``StoreDamaged`` for a damaged one).

    Example:
        reader = LedgerReader(Path("storage/docstore.sqlite"))
        len(reader.ledger())  # documents
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=60)  # rw: WAL readers need the -shm
        except sqlite3.Error as exc:
            raise sqlite_error(path, exc) from exc

    def _all(self, collection: str) -> dict[str, dict[str, Any]]:
        try:
            rows = self._conn.execute("SELECT key, value FROM kv WHERE collection = ?", (collection,)).fetchall()
            return {k: json.loads(v) for k, v in rows}
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from exc
        except ValueError as exc:
            raise sqlite_error(self.path, sqlite3.DatabaseError(f"database corrupt: a stored value is not JSON ({exc})")) from exc

    def ledger(self) -> dict[str, LedgerEntry]:
        from pipeline.store.ledger import LedgerEntry

        return {doc: LedgerEntry.model_validate(raw) for doc, raw in self._all(LEDGER).items()}

    def failures(self) -> dict[str, dict[str, Any]]:
        return self._all(FAILURES)

    def raw_ledger(self) -> dict[str, dict[str, Any]]:
        """The ledger as stored (JSON), as ``ParentStore.raw_ledger`` returns it (for layout checks)."""
        return self._all(LEDGER)

    def count(self) -> int:
        try:
            return self._conn.execute("SELECT COUNT(*) FROM kv WHERE collection = ?", (f"{NAMESPACE}/data",)).fetchone()[0]
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from exc

    def close(self) -> None:
        self._conn.close()
