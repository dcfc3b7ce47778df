"""Write one document's parents and references so a reader never sees a half-written document.

Order, for a document whose parents changed (ids are content-addressed, so changed text = new ids):
1. the ledger records the *intent* (old ∪ new ids) before anything else, so a crash leaves a record
   of every id that may exist;
2. new parents go into the docstore (one SQLite transaction);
3. new references are upserted into Qdrant: each points at a parent that already exists;
4. references that are no longer wanted are deleted, then their parents;
5. the ledger entry is replaced by the final one.
A run killed anywhere is finished by the next run, which finds the intent and deletes what is not in
the new set. Queries in between may see old and new versions side by side, never a dangling one.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode
from qdrant_client import QdrantClient

from pipeline.errors import StoreUnavailable
from pipeline.models import RefKind
from pipeline.store import layout
from pipeline.store.docstore import ParentStore
from pipeline.store.layout import KIND_TO_COLLECTION, Collection
from pipeline.store.qdrant import delete_points, flush, vector_store, with_retries

logger = logging.getLogger(__name__)

FAULT_ENV = "PIPELINE_FAULT_PAUSE"  # test hook: "<step>:<marker file>" pauses at that step


def checkpoint(step: str) -> None:
    """Let crash tests stop a real ingest at a named step (the test then SIGKILLs the process).

    With ``PIPELINE_FAULT_PAUSE=after-parents:/tmp/m``, the process touches /tmp/m on reaching
    ``after-parents`` and sleeps there. Unset (always, outside tests) this is a no-op.
    """
    spec = os.environ.get(FAULT_ENV, "")
    if not spec.startswith(step + ":"):
        return
    marker = spec.split(":", 1)[1]
    open(marker, "w").close()
    time.sleep(3600)


def ids_of(entry: dict[str, Any] | None, pending: bool = True) -> tuple[set[str], dict[str, set[str]]]:
    """Parent ids and ref ids per collection in a ledger entry; with ``pending``, the unfinished intent too."""
    parents: set[str] = set()
    refs: dict[str, set[str]] = {c.value: set() for c in Collection}
    parts = [entry or {}] + ([(entry or {}).get("pending") or {}] if pending else [])
    for part in parts:
        parents.update(part.get("parents", []))
        for coll, ids in (part.get("refs") or {}).items():
            refs.setdefault(coll, set()).update(ids)
    return parents, refs


class DocumentWriter:
    """Applies one document's new node set to the docstore and the four collections."""

    def __init__(self, client: QdrantClient, collections: dict[Collection, str], parents: ParentStore) -> None:
        self.client = client
        self.collections = collections
        self.parents = parents
        # Every reference gets its BM25 vector at write time (ingest backfills older collections first).
        self.stores = {c: vector_store(client, n, hybrid=True) for c, n in collections.items()}
        # Time spent in Qdrant (upserts with their BM25 vectors, deletes, flushes): ingest reports it
        # as ``store_seconds`` so the store's share of an ingest is visible beside the embedding's.
        self.store_seconds = 0.0

    def timed(self, fn: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.store_seconds += time.perf_counter() - started

    def write(self, doc_id: str, content_hash: str, fingerprint: str, nodes: Sequence[BaseNode]) -> dict[str, Any]:
        """Make the store hold exactly ``nodes`` for ``doc_id``; returns the new ledger entry.

        Raises:
            StoreUnavailable: the docstore cannot be written (e.g. disk full) or Qdrant is unreachable;
                what was committed before stays consistent and the next run finishes the document.
        """
        try:
            return self._write(doc_id, content_hash, fingerprint, nodes)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"docstore {self.parents.path} cannot be written ({exc}); free space and run again") from exc

    def _write(self, doc_id: str, content_hash: str, fingerprint: str, nodes: Sequence[BaseNode]) -> dict[str, Any]:
        new_parents = [n for n in nodes if n.metadata.get(layout.KIND) == "parent" and n.embedding is None]
        refs = [n for n in nodes if n.embedding is not None]
        by_coll: dict[Collection, list[BaseNode]] = {c: [] for c in Collection}
        for ref in refs:
            by_coll[KIND_TO_COLLECTION[RefKind(ref.metadata[layout.KIND])]].append(ref)

        old = self.parents.ledger_entry(doc_id)
        done_parents, done_refs = ids_of(old, pending=False)  # surely written
        if old and old.get("rebuild"):  # `check --repair` found pieces missing: write everything again
            done_parents, done_refs = set(), {c.value: set() for c in Collection}
        old_parents, old_refs = ids_of(old)  # may exist: includes a crashed run's intent
        new_entry = {
            "content_hash": content_hash,
            "fingerprint": fingerprint,
            "parents": [p.node_id for p in new_parents],
            "refs": {c.value: [n.node_id for n in by_coll[c]] for c in Collection},
            "kinds": dict(Counter(r.metadata[layout.KIND] for r in refs)),
        }
        # The intent keeps a crashed run's pending ids too, so none of them is ever forgotten.
        pend_parents = sorted(old_parents - done_parents | set(new_entry["parents"]))
        pend_refs = {c: sorted(old_refs[c] - done_refs[c] | set(ids)) for c, ids in new_entry["refs"].items()}
        intent = dict(old or {}, pending={"parents": pend_parents, "refs": pend_refs})
        self.parents.put_ledger(doc_id, intent)
        checkpoint("after-intent")

        self.parents.put([p for p in new_parents if p.node_id not in done_parents])
        checkpoint("after-parents")
        for coll, nodes_c in by_coll.items():
            todo = [n for n in nodes_c if n.node_id not in done_refs[coll.value]]
            if todo:
                self.timed(with_retries(self.stores[coll].add), todo)
                checkpoint(f"after-{coll.value}")
        for coll in Collection:
            stale = sorted(old_refs.get(coll.value, set()) - set(new_entry["refs"][coll.value]))
            if stale:
                self.timed(delete_points, self.client, self.collections[coll], stale)
        checkpoint("after-delete-refs")
        stale_parents = sorted(old_parents - set(new_entry["parents"]))
        if stale_parents:
            self.parents.delete(stale_parents)
        self.timed(flush, self.client)  # the ledger never runs ahead of what Qdrant holds on disk
        self.parents.put_ledger(doc_id, new_entry)
        return new_entry

    def remove(self, doc_id: str) -> None:
        """Delete every reference and parent of a document, then its ledger entry."""
        entry = self.parents.ledger_entry(doc_id)
        parents, refs = ids_of(entry)
        for coll in Collection:
            if refs.get(coll.value):
                self.timed(delete_points, self.client, self.collections[coll], sorted(refs[coll.value]))
        self.timed(flush, self.client)
        self.parents.delete(sorted(parents))
        self.parents.delete_ledger(doc_id)
