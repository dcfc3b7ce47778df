"""The ingest ledger, typed, and the one protocol that changes what a document has in the store.

The ledger (one row per document in the docstore's SQLite file) says which parents and which
references a document owns. Every change to a document — phase-1 ingest, the enrichment of one
parent, removal, and what ``check --repair`` rebuilds — goes through ``LedgerWriter.apply``:

1. **intent**: the entry is rewritten with ``pending`` = every id that may exist after the change
   besides the committed ones (a crashed run's leftovers included), so no id is ever forgotten;
2. new parents go into the docstore (one SQLite transaction);
3. new references are upserted into their collections: each points at a parent that exists;
4. references in the old entry or its pending part but not in the final one are deleted, then parents;
5. the engine is flushed: the ledger never runs ahead of what Qdrant holds on disk;
6. the final entry replaces the intent (or, for a removal, the entry is deleted).

A run killed anywhere leaves an entry with ``pending``; the next change of that document deletes
whatever of the pending ids its final entry does not hold. ``pending.op`` says what was in flight,
so each reader treats it right: an interrupted enrichment leaves the document searchable and
unchanged for ``ingest`` (it was written twice before: a killed ``enrich`` plus ``ingest`` emptied a
document's parent references, and ``check --repair`` then deleted their vectors).

Stored as plain JSON with the keys the ledger always had, so older stores read unchanged.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, model_validator

from pipeline.models import RefKind
from pipeline.store import layout
from pipeline.store.layout import KIND_TO_COLLECTION, Collection

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode
    from qdrant_client import QdrantClient

    from pipeline.store.docstore import ParentStore

logger = logging.getLogger(__name__)

COLLECTIONS = tuple(c.value for c in Collection)
ENRICH_KINDS = (RefKind.SUMMARY, RefKind.QUESTION)
ENRICH_COLLECTIONS = tuple(KIND_TO_COLLECTION[k] for k in ENRICH_KINDS)

FAULT_ENV = "PIPELINE_FAULT_PAUSE"  # test hook: "<step>:<marker file>" pauses at that step
# Read here, once per process, and not through ``Settings``, on purpose: it is a crash-test hook, not
# something a user sets. The tests that use it start a real process and kill it (tests/e2e/
# test_recovery.py, test_sync.py, test_enrich.py, tests/fleet/), and the environment is the one thing
# that reaches into that process; the write protocol takes no ``Settings`` (the same protocol serves
# ingest, enrich, removal, repair and migration, whatever settings they run with); and ``pipeline
# config`` lists every setting to users, where a kill switch has no place (``settings_check.NOT_SETTINGS``
# names it so it is not an unknown-variable error). Read at import, the write path never consults the
# environment: unset (always, outside tests) each checkpoint is one string comparison.
_FAULT_SPEC = os.environ.get(FAULT_ENV, "")


def fault_marker(step: str) -> str | None:
    """The marker file a crash test asked this process to touch at ``step`` (``FAULT_ENV``), or None."""
    if not _FAULT_SPEC.startswith(step + ":"):
        return None
    return _FAULT_SPEC.split(":", 1)[1]


def checkpoint(step: str) -> None:
    """Let crash tests stop a real run at a named step (the test then SIGKILLs the process).

    With ``PIPELINE_FAULT_PAUSE=after-parents:/tmp/m`` in the environment the process starts with, it
    touches /tmp/m on reaching ``after-parents`` and sleeps there. Unset (always, outside tests) this is
    a no-op.
    """
    marker = fault_marker(step)
    if marker is None:
        return
    open(marker, "w").close()
    time.sleep(3600)


class Op(str, Enum):
    """What a pending intent was doing when its run stopped."""

    WRITE = "write"  # phase 1: parents, chunk and self references of a whole document
    ENRICH = "enrich"  # phase 2: summary and question references of one parent
    REMOVE = "remove"  # every piece of a document


def _refs(raw: Any) -> dict[str, list[str]]:
    """Reference ids per collection, with every collection present (older entries lack some)."""
    raw = raw or {}
    return {c: list(raw.get(c) or []) for c in COLLECTIONS}


class Pending(BaseModel):
    """Ids an unfinished change may have written besides the committed entry's."""

    op: Op = Op.WRITE
    parents: list[str] = Field(default_factory=list)
    refs: dict[str, list[str]] = Field(default_factory=lambda: _refs(None))
    enrich: str | None = None  # op ENRICH: the parent in flight

    @model_validator(mode="before")
    @classmethod
    def _older(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "op" not in data:  # written before ops were recorded: an enrichment named its parent
                data["op"] = Op.ENRICH.value if data.get("enrich") else Op.WRITE.value
            data["refs"] = _refs(data.get("refs"))
        return data


class Enrichment(BaseModel):
    """One parent's summary and question references; ``fingerprint`` None = `enrich` must redo it
    (``check --repair`` re-registered references it found without a finished enrichment)."""

    fingerprint: str | None = None
    refs: dict[str, list[str]] = Field(default_factory=dict)


class LedgerEntry(BaseModel):
    """What one document owns. ``content_hash`` None (or ``rebuild``) makes the next ingest redo it."""

    content_hash: str | None = None
    fingerprint: str | None = None
    parents: list[str] = Field(default_factory=list)
    refs: dict[str, list[str]] = Field(default_factory=lambda: _refs(None))
    kinds: dict[str, int] = Field(default_factory=dict)
    enriched: dict[str, Enrichment] = Field(default_factory=dict)
    pending: Pending | None = None
    rebuild: bool = False
    # Issue 23 (store/documents.py): what people see and type. ``name``: the path relative to the folder
    # it was ingested from; ``alias_of``: the doc_id of an indexed document with the same bytes (this
    # entry then owns no parents or references); ``hidden``: content kept for its aliases after its own
    # name was removed. All optional and written only when set, so older entries read unchanged.
    name: str | None = None
    alias_of: str | None = None
    hidden: bool = False
    size: int | None = None
    ingested_at: str | None = None
    # Issue 26: the file as last seen (size, mtime ns, inode, ctime ns; ``ingest/scan.py``). The same four
    # mean the same bytes (as make and rsync decide), so an unchanged file is neither read nor hashed;
    # any write to the file changes its ctime, whatever is done to its mtime.
    file_stat: tuple[int, int, int, int] | None = None

    @model_validator(mode="before")
    @classmethod
    def _older(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            data["refs"] = _refs(data.get("refs"))
            if not data.get("pending"):
                data["pending"] = None
        return data

    @classmethod
    def load(cls, raw: dict[str, Any] | None) -> LedgerEntry | None:
        return None if raw is None else cls.model_validate(raw)

    def dump(self) -> dict[str, Any]:
        """The stored JSON: the keys the ledger always had; optional parts only when set."""
        out: dict[str, Any] = {
            "content_hash": self.content_hash,
            "fingerprint": self.fingerprint,
            "parents": list(self.parents),
            "refs": {c: list(ids) for c, ids in self.refs.items()},
            "kinds": dict(self.kinds),
        }
        if self.enriched:
            out["enriched"] = {pid: e.model_dump() for pid, e in self.enriched.items()}
        if self.pending is not None:
            out["pending"] = self.pending.model_dump(mode="json")
        if self.rebuild:
            out["rebuild"] = True
        for key in ("name", "alias_of", "size", "ingested_at"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.file_stat is not None:
            out["file_stat"] = list(self.file_stat)
        if self.hidden:
            out["hidden"] = True
        return out

    @property
    def interrupted_write(self) -> bool:
        """A phase-1 write or a removal stopped midway: ``ingest`` must redo the document.
        An interrupted enrichment does not count: the document is whole and searchable."""
        return self.pending is not None and self.pending.op is not Op.ENRICH

    def unchanged(self, content_hash: str | None, fingerprint: str) -> bool:
        """Whether ``ingest`` may skip the document: whole, not marked for rebuild, same bytes and
        same settings. The one rule for the real run and ``--dry-run`` (they drifted when written twice)."""
        return (
            not self.interrupted_write
            and not self.rebuild
            and content_hash is not None
            and self.content_hash == content_hash
            and self.fingerprint == fingerprint
        )

    def known_hash(self, file_stat: Sequence[int] | None) -> str | None:
        """The recorded content hash if the file is as last seen (``file_stat``), else None: hash it."""
        same = file_stat is not None and self.file_stat is not None and tuple(self.file_stat) == tuple(file_stat)
        return self.content_hash if same else None

    def committed(self) -> LedgerEntry:
        return self.model_copy(update={"pending": None})

    def parent_ids(self, pending: bool = True) -> set[str]:
        out = set(self.parents)
        if pending and self.pending is not None:
            out.update(self.pending.parents)
        return out

    def ref_ids(self, pending: bool = True) -> dict[str, set[str]]:
        out = {c: set(self.refs.get(c, [])) for c in COLLECTIONS}
        if pending and self.pending is not None:
            for c in COLLECTIONS:
                out[c].update(self.pending.refs.get(c, []))
        return out

    def enriched_with(self, fingerprint: str) -> set[str]:
        return {pid for pid, e in self.enriched.items() if e.fingerprint == fingerprint}

    def with_enrichment(self, parent_id: str, fingerprint: str | None, new_refs: dict[str, list[str]]) -> LedgerEntry:
        """The committed entry after one parent's summary/question references became ``new_refs``."""
        old = self.enriched.get(parent_id)
        old_ids = {c: set((old.refs if old else {}).get(c, [])) for c in COLLECTIONS}
        refs = {c: list(ids) for c, ids in self.refs.items()}
        for coll in ENRICH_COLLECTIONS:
            c = coll.value
            new = list(dict.fromkeys(new_refs.get(c, [])))
            refs[c] = [i for i in refs[c] if i not in old_ids[c] and i not in new] + new
        enriched = dict(self.enriched)
        enriched[parent_id] = Enrichment(fingerprint=fingerprint, refs={c.value: list(new_refs.get(c.value, [])) for c in ENRICH_COLLECTIONS})
        kinds = dict(self.kinds)
        for kind in ENRICH_KINDS:
            count = len(refs[KIND_TO_COLLECTION[kind].value])
            if count:
                kinds[kind.value] = count
            else:
                kinds.pop(kind.value, None)
        return self.model_copy(update={"refs": refs, "enriched": enriched, "kinds": kinds, "pending": None})


def entry_for_nodes(content_hash: str | None, fingerprint: str, parents: Sequence[BaseNode], refs: Sequence[BaseNode]) -> LedgerEntry:
    """The phase-1 entry of a document whose parents and references are these nodes."""
    by_coll: dict[str, list[str]] = _refs(None)
    for ref in refs:
        by_coll[KIND_TO_COLLECTION[RefKind(ref.metadata[layout.KIND])].value].append(ref.node_id)
    return LedgerEntry(
        content_hash=content_hash,
        fingerprint=fingerprint,
        parents=[p.node_id for p in parents],
        refs=by_coll,
        kinds=dict(Counter(r.metadata[layout.KIND] for r in refs)),
    )


@dataclass
class Change:
    """One change of one document. ``final`` None removes the document.

    ``parents`` and ``refs`` are the nodes to write (refs with their embeddings); with
    ``skip_committed`` those the committed entry already holds, written by the same settings, are not
    written again (phase 1: ids are content-addressed, so same id and fingerprint = same node).
    """

    op: Op
    final: LedgerEntry | None
    parents: Sequence[BaseNode] = ()
    refs: Sequence[BaseNode] = ()
    enrich: str | None = None
    skip_committed: bool = False


class LedgerWriter:
    """Applies ``Change``s to one store's docstore and collections under the protocol above.

    Example:
        writer = LedgerWriter(client, qdrant.names(settings), ParentStore(path))
        writer.apply(doc_id, Change(Op.REMOVE, final=None))
    """

    def __init__(self, client: QdrantClient, collections: dict[Collection, str], parents: ParentStore) -> None:
        from pipeline.store.qdrant import vector_store

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

    def entry(self, doc_id: str) -> LedgerEntry | None:
        return self.parents.ledger_entry(doc_id)

    def apply(self, doc_id: str, change: Change) -> LedgerEntry | None:
        """Make the store hold exactly ``change.final`` for ``doc_id``; returns it.

        Raises:
            StoreUnavailable: the docstore cannot be written (e.g. disk full) or Qdrant is unreachable;
                what was committed before stays consistent and the next change of the document finishes it.
        """
        import sqlite3

        from pipeline.errors import StoreUnavailable

        try:
            return self._apply(doc_id, change)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"docstore {self.parents.path} cannot be written ({exc}); free space and run again") from exc

    def _apply(self, doc_id: str, change: Change) -> LedgerEntry | None:
        from pipeline.store.qdrant import delete_points, flush, with_retries

        step = "" if change.op is Op.WRITE else f"{change.op.value}-"
        old = self.entry(doc_id)
        final = change.final
        committed = old.committed() if old else LedgerEntry()
        old_parents = old.parent_ids() if old else set()
        old_refs = old.ref_ids() if old else {c: set() for c in COLLECTIONS}
        new_parents = set(final.parents) if final else set()
        new_refs = final.ref_ids(pending=False) if final else {c: set() for c in COLLECTIONS}
        done_parents, done_refs = committed.parent_ids(False), committed.ref_ids(False)
        same_settings = change.skip_committed and old is not None and not old.rebuild and final is not None and committed.fingerprint == final.fingerprint
        if not same_settings:
            done_parents, done_refs = set(), {c: set() for c in COLLECTIONS}

        # 1. intent: every id that may exist besides the committed ones, a crashed run's included.
        put_parents = [p for p in change.parents if p.node_id not in done_parents]
        put_refs: dict[Collection, list[BaseNode]] = {c: [] for c in Collection}
        for ref in change.refs:
            coll = KIND_TO_COLLECTION[RefKind(ref.metadata[layout.KIND])]
            if ref.node_id not in done_refs[coll.value]:
                put_refs[coll].append(ref)
        committed_parents, committed_refs = committed.parent_ids(False), committed.ref_ids(False)
        pending = Pending(
            op=change.op,
            parents=sorted((old_parents - committed_parents) | {p.node_id for p in put_parents} | (new_parents - committed_parents)),
            refs={c: sorted((old_refs[c] - committed_refs[c]) | {n.node_id for n in put_refs[Collection(c)]} | (new_refs[c] - committed_refs[c])) for c in COLLECTIONS},
            enrich=change.enrich,
        )
        self.parents.put_ledger(doc_id, committed.model_copy(update={"pending": pending}))
        checkpoint(f"{step}after-intent")

        # 2. parents, 3. references (each points at a parent that exists now).
        if put_parents:
            self.parents.put(put_parents)
        checkpoint(f"{step}after-parents")
        for coll, nodes in put_refs.items():
            if nodes:
                self.timed(with_retries(self.stores[coll].add), nodes)
                checkpoint(f"{step}after-{coll.value}")
        # 4. what the final entry does not hold: references first, then their parents.
        for coll in Collection:
            stale = sorted(old_refs[coll.value] - new_refs[coll.value])
            if stale:
                self.timed(delete_points, self.client, self.collections[coll], stale)
        checkpoint(f"{step}after-delete-refs")
        stale_parents = sorted(old_parents - new_parents)
        if stale_parents:
            self.parents.delete(stale_parents)
        # 5. durable before the commit point; 6. the commit point.
        self.timed(flush, self.client)
        checkpoint(f"{step}after-flush")
        if final is None:
            self.parents.delete_document_rows(doc_id)
            return None
        final = final.model_copy(update={"pending": None, "rebuild": False})
        self.parents.put_ledger(doc_id, final)
        return final


def total_refs(entries: Iterable[LedgerEntry]) -> dict[str, int]:
    """Committed references per collection over ``entries`` (``check`` compares them with the engine's counts)."""
    out = dict.fromkeys(COLLECTIONS, 0)
    for e in entries:
        for c in COLLECTIONS:
            out[c] += len(set(e.refs.get(c, [])))
    return out
