"""Documents as objects: the names people type, what each document holds, and its removal over the ledger.

Why names: a document's id is its resolved absolute path (``layout.doc_id_for``), which nobody types
and which every output used to shorten to a file name that then matched nothing (``--doc-id
paper.pdf`` gave an empty result). A document's ``name`` is its path relative to the folder it was
ingested from (a file given directly: its file name), recorded in its ledger entry once and kept, so
it is stable across runs; a name another document already has is lengthened with parent folders
until it is unique. Stores written before names read with the file name as their name (lengthened the
same way when two collide).

Same content, one copy: a file whose bytes equal an indexed document's is recorded as an *alias*
(its ledger entry has ``alias_of`` and owns nothing); it costs no embedding, adds no references, and
a search finds the content once, under both names. Removing a name keeps the content while another
name still needs it (the owner's entry is then ``hidden``: kept for its aliases, listed under them).

Removal goes through the one write protocol (``LedgerWriter.apply`` with ``Change(Op.REMOVE)``):
a ``kill -9`` mid-removal leaves an intent ``check`` accepts and the next ``ingest``, ``check
--repair`` or ``docs rm`` finishes. Ingest-cache rows are kept on purpose: they are keyed by the
text and settings (``IngestionCache``), not by document, so another document with the same text,
or the same file ingested again, reuses them instead of embedding again.

Example:
    catalog = Catalog.read(Path("storage"))
    catalog.resolve("papers/s2orc.pdf")   # -> doc_id, or UnknownDocument listing the closest names
    [d.name for d in catalog.documents()]
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from pipeline.config import Settings
from pipeline.errors import StoreUnavailable, UnknownDocument
from pipeline.store import state
from pipeline.store.docstore import PAGE_OFFSETS, LedgerReader
from pipeline.store.ledger import ENRICH_COLLECTIONS, LedgerEntry, Op

if TYPE_CHECKING:
    from pipeline.store.docstore import ParentStore
    from pipeline.store.ledger import LedgerWriter

logger = logging.getLogger(__name__)

DOCSTORE = "docstore.sqlite"  # the docstore's file name in a store folder


class DocumentInfo(BaseModel):
    """One row of ``docs list`` / ``GET /documents``. An alias shows its content's numbers."""

    name: str
    doc_id: str
    pages: int = 0
    parents: int = 0
    enriched_parents: int = 0
    ingested_at: str | None = None
    size: int | None = None
    content_hash: str | None = None
    alias_of: str | None = Field(None, description="The name whose content this document shares (same bytes: nothing embedded twice)")
    aliases: list[str] = Field(default_factory=list, description="Other names with the same content")
    state: str = Field("ok", description="ok | removing (an interrupted removal: the next ingest or docs rm finishes it) | pending (an interrupted write)")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def name_for(path: Path, given: Iterable[Path]) -> str:
    """The name of a file found from ``given`` paths: relative to the folder it was found in, else its file name."""
    real = Path(os.path.realpath(path))
    best: str | None = None
    for g in given:
        try:
            root = Path(os.path.realpath(g))
        except (OSError, ValueError):
            continue
        if root != real and real.is_relative_to(root):
            rel = real.relative_to(root).as_posix()
            if best is None or len(rel) < len(best):
                best = rel
    return best or real.name


def unique_name(candidate: str, doc_id: str, taken: dict[str, str]) -> str:
    """``candidate``, or it lengthened with parent folders of ``doc_id`` until no other document has it."""
    owner = taken.get(candidate)
    if owner is None or owner == doc_id:
        return candidate
    parts = PurePosixPath(doc_id).parts
    for n in range(len(PurePosixPath(candidate).parts) + 1, len(parts)):
        longer = "/".join(parts[-n:])
        if taken.get(longer) in (None, doc_id):
            return longer
    return doc_id


def display_names(ledger: dict[str, LedgerEntry]) -> dict[str, str]:
    """doc_id -> name for every entry: the recorded one, else the file name lengthened until unique."""
    names: dict[str, str] = {}
    taken: dict[str, str] = {}
    for doc_id, e in sorted(ledger.items()):
        if e.name:
            names[doc_id] = e.name
            taken[e.name] = doc_id
    for doc_id in sorted(d for d in ledger if d not in names):
        base = PurePosixPath(doc_id).name or doc_id
        clashes = [d for d in ledger if d != doc_id and d not in names and PurePosixPath(d).name == base]
        name = unique_name(base, doc_id, taken)
        if clashes and name == base:  # two old entries with one file name: neither gets the short one
            name = unique_name(base, doc_id, {base: "", **taken})
        names[doc_id] = name
        taken[name] = doc_id
    return names


class DocumentReader(LedgerReader):
    """The ledger and page offsets with plain ``sqlite3``: read-only commands import no LlamaIndex and create nothing."""

    def page_offsets(self) -> dict[str, dict[str, Any]]:
        return self._all(PAGE_OFFSETS)


def docstore_path(store: Path) -> Path:
    """The store's docstore, or ``StoreUnavailable`` "no store at …" (checked before anything is opened or created)."""
    path = store / DOCSTORE
    if not path.is_file():
        raise StoreUnavailable(
            f"no store at {store}: nothing has been ingested there (run `python -m pipeline ingest PATH --store {store}`, or pass the right --store)"
        )
    return path


def require_store(settings: Settings) -> None:
    """``StoreUnavailable`` "no store …" unless something was ingested into this store (its docstore file, or in fleet mode its rows)."""
    if not state.fleet(settings):
        docstore_path(settings.store)
    elif not state.has_docstore(settings):
        raise StoreUnavailable(
            f"no store named {state.namespace(settings)!r} in the database: nothing has been ingested there "
            "(run `python -m pipeline ingest PATH` with the same database.url and database.namespace)"
        )


class Catalog:
    """Every document of a store by name, read once from the ledger.

    Example:
        catalog = Catalog.read(Path("storage"))
        doc_id = catalog.resolve("acl2020.acl-main.447.pdf")
    """

    def __init__(self, ledger: dict[str, LedgerEntry], page_offsets: dict[str, dict[str, Any]] | None = None) -> None:
        self.ledger = ledger
        self.offsets = page_offsets or {}
        self.names = display_names(ledger)
        self.by_name = {n: d for d, n in self.names.items()}

    @classmethod
    def read(cls, store: Path | Settings) -> Catalog:
        """Read a store's catalog without writing or creating anything (given settings: in fleet mode, from the database).

        Raises:
            StoreUnavailable: no store there; StoreDamaged: the docstore cannot be read.
        """
        if not isinstance(store, Path) and state.fleet(store):
            require_store(store)
            reader: Any = state.open_ledger_reader(store)
        else:
            reader = DocumentReader(docstore_path(store if isinstance(store, Path) else store.store))
        try:
            return cls(reader.ledger(), reader.page_offsets())
        finally:
            reader.close()

    def owner(self, doc_id: str) -> str:
        """The doc_id whose parents and references hold this document's content (an alias's owner, else itself)."""
        entry = self.ledger.get(doc_id)
        return entry.alias_of if entry is not None and entry.alias_of in self.ledger else doc_id

    def aliases(self, owner: str) -> list[str]:
        return sorted(d for d, e in self.ledger.items() if e.alias_of == owner)

    def names_of(self, owner: str) -> list[str]:
        """Every visible name of one content: the owner's (unless hidden) and its aliases'."""
        entry = self.ledger.get(owner)
        own = [self.names[owner]] if entry is not None and not entry.hidden else []
        return own + [self.names[a] for a in self.aliases(owner)]

    def visible(self) -> list[str]:
        return sorted((d for d, e in self.ledger.items() if not e.hidden), key=lambda d: self.names[d])

    def resolve(self, name: str) -> str:
        """The doc_id a name (or a doc_id, or a path to an ingested file) stands for.

        Raises:
            UnknownDocument: nothing, or more than one document, answers to ``name``; lists the closest names.
        """
        visible = self.visible()
        if name in self.by_name and self.by_name[name] in visible:
            return self.by_name[name]
        if name in self.ledger and name in visible:
            return name
        try:
            as_path = Path(name).expanduser().resolve().as_posix()
        except (OSError, RuntimeError, ValueError):
            as_path = ""
        if as_path in self.ledger and as_path in visible:
            return as_path
        shown = [self.names[d] for d in visible]
        tail = [n for n in shown if n.endswith("/" + name) or PurePosixPath(n).name == name]
        if len(tail) == 1:
            return self.by_name[tail[0]]
        if len(tail) > 1:
            raise UnknownDocument(f"document name {name!r} is ambiguous: it could be {', '.join(sorted(tail))}; give the whole name", name, sorted(tail), ambiguous=True)
        close = difflib.get_close_matches(name, shown, n=5, cutoff=0.5) or difflib.get_close_matches(PurePosixPath(name).name, shown, n=5, cutoff=0.5)
        if not shown:
            raise UnknownDocument(f"no document named {name!r}: the store holds no documents", name)
        hint = f"closest: {', '.join(close)}" if close else f"known: {', '.join(sorted(shown)[:10])}{' …' if len(shown) > 10 else ''}"
        raise UnknownDocument(f"no document named {name!r} ({hint}); `pipeline docs list` shows every name", name, close)

    def info(self, doc_id: str) -> DocumentInfo:
        entry = self.ledger[doc_id]
        owner = self.owner(doc_id)
        content = self.ledger.get(owner, entry)
        offsets = (self.offsets.get(owner) or {}).get("offsets") or []
        others = [n for n in self.names_of(owner) if n != self.names[doc_id]]
        if entry.pending is not None:
            state = "removing" if entry.pending.op is Op.REMOVE else "pending"
        else:
            state = "ok"
        return DocumentInfo(
            name=self.names[doc_id],
            doc_id=doc_id,
            pages=len(offsets),
            parents=len(content.parents),
            enriched_parents=sum(1 for pid in content.parents if pid in content.enriched),
            ingested_at=entry.ingested_at,
            size=entry.size,
            content_hash=entry.content_hash,
            alias_of=self.names.get(owner) if owner != doc_id and not content.hidden else None,
            aliases=others,
            state=state,
        )

    def documents(self) -> list[DocumentInfo]:
        return [self.info(d) for d in self.visible()]


class ParentInfo(BaseModel):
    """One parent of ``docs show``: its pages, text, and LLM summary and questions when enriched."""

    parent_id: str
    readable_id: str = ""
    pages: list[int] = Field(default_factory=list)
    text: str = ""
    summary: str | None = None
    questions: list[str] = Field(default_factory=list)


class DocumentDetail(DocumentInfo):
    """``docs show`` / ``GET /documents/{name}``: the row plus every parent in order."""

    parent_details: list[ParentInfo] = Field(default_factory=list)


def document_detail(catalog: Catalog, doc_id: str, parents: ParentStore, client: Any, collections: dict[Any, str]) -> DocumentDetail:
    """A document with its parents in order, each with pages, text, and its summary and questions when present."""
    from pipeline.store import layout
    from pipeline.store.layout import NODE_CONTENT, Collection, display_parent_id

    info = catalog.info(doc_id)
    content = catalog.ledger[catalog.owner(doc_id)]
    nodes = parents.get_many(content.parents)
    texts: dict[str, dict[str, str]] = {}  # ref id -> {"text", "parent_id"}
    for coll in ENRICH_COLLECTIONS:
        ids = sorted({i for e in content.enriched.values() for i in e.refs.get(coll.value, [])})
        if not ids:
            continue
        for point in client.retrieve(collections[Collection(coll.value)], ids, with_payload=True):
            payload = point.payload or {}
            try:
                text = json.loads(payload.get(NODE_CONTENT, "{}")).get("text", "")
            except ValueError:
                text = ""
            texts[str(point.id)] = {"text": text, "kind": coll.value}
    out = []
    for pid in content.parents:
        node = nodes.get(pid)
        meta = node.metadata if node is not None else {}
        enr = content.enriched.get(pid)
        summaries = [texts[i]["text"] for i in (enr.refs.get("summaries", []) if enr else []) if i in texts]
        questions = [texts[i]["text"] for i in (enr.refs.get("questions", []) if enr else []) if i in texts]
        out.append(
            ParentInfo(
                parent_id=pid,
                readable_id=display_parent_id(meta.get(layout.READABLE_ID, "")),
                pages=list(meta.get(layout.PAGES) or []),
                text=node.get_content() if node is not None else "",
                summary=summaries[0] if summaries else None,
                questions=questions,
            )
        )
    return DocumentDetail(**info.model_dump(), parent_details=out)


class Removed(BaseModel):
    """What ``docs rm`` did to one name: ``content`` says whether its parents and references went too."""

    name: str
    doc_id: str
    content: str  # "removed" | "kept for <names>"


def remove_document(writer: LedgerWriter, parents: ParentStore, doc_id: str) -> Removed:
    """Remove one document (one name) under the ledger protocol; content another name needs stays.

    An alias's own entry goes (it owns nothing), and its owner too if the owner's name was removed
    before and no other alias remains. An owner with aliases is only ``hidden``: one SQLite write, so a
    crash leaves it either named or hidden, never half.
    """
    from pipeline.store.ledger import Change

    ledger = parents.ledger()
    names = display_names(ledger)
    name = names.get(doc_id, doc_id)
    entry = ledger.get(doc_id)
    if entry is None:
        return Removed(name=name, doc_id=doc_id, content="already gone")
    if entry.alias_of is not None and entry.pending is None:
        owner_id = entry.alias_of
        writer.apply(doc_id, Change(Op.REMOVE, final=None))  # owns nothing: the entry goes
        owner = ledger.get(owner_id)
        left = [d for d, e in ledger.items() if e.alias_of == owner_id and d != doc_id]
        if owner is not None and owner.hidden and not left:
            writer.apply(owner_id, Change(Op.REMOVE, final=None))
            return Removed(name=name, doc_id=doc_id, content="removed")
        return Removed(name=name, doc_id=doc_id, content="kept for " + ", ".join(names[d] for d in ([] if owner is None or owner.hidden else [owner_id]) + left))
    aliases = [d for d, e in ledger.items() if e.alias_of == doc_id and d != doc_id]
    if aliases and entry.pending is None:
        parents.put_ledger(doc_id, entry.model_copy(update={"hidden": True}))
        return Removed(name=name, doc_id=doc_id, content="kept for " + ", ".join(names[d] for d in aliases))
    writer.apply(doc_id, Change(Op.REMOVE, final=None))
    return Removed(name=name, doc_id=doc_id, content="removed")


class IngestNames:
    """One ingest run's view of names and contents: the name a new document gets, and which indexed
    document already holds a file's bytes (so the file becomes an alias instead of being embedded again).

    Example:
        names = IngestNames(parents.ledger(), [Path("papers/")], fingerprint)
        names.owner_of(sha256, doc_id)  # doc_id of an indexed document with these bytes, or None
    """

    def __init__(self, ledger: dict[str, LedgerEntry], given: Iterable[Path], fingerprint: str) -> None:
        self.given = list(given)
        self.fingerprint = fingerprint
        self.taken = {n: d for d, n in display_names(ledger).items()}
        self.owners: dict[str, str] = {}
        for doc_id, e in sorted(ledger.items()):
            if e.content_hash and e.alias_of is None and e.parents and e.pending is None and not e.rebuild and e.fingerprint == fingerprint:
                self.owners.setdefault(e.content_hash, doc_id)

    def name(self, path: Path, doc_id: str, old: LedgerEntry | None) -> str:
        """The recorded name (stable), else a new unique one from the folder the file was found in."""
        if old is not None and old.name:
            return old.name
        name = unique_name(name_for(path, self.given), doc_id, self.taken)
        self.taken[name] = doc_id
        return name

    def owner_of(self, content_hash: str, doc_id: str) -> str | None:
        owner = self.owners.get(content_hash)
        return owner if owner is not None and owner != doc_id else None

    def alias_entry(self, path: Path, doc_id: str, old: LedgerEntry | None, content_hash: str, size: int, owner: str) -> LedgerEntry:
        """The final entry of a file recorded as an alias of ``owner``: it owns no parents and no references."""
        return LedgerEntry(
            content_hash=content_hash, fingerprint=self.fingerprint, name=self.name(path, doc_id, old), alias_of=owner, size=size, ingested_at=now()
        )

    def stamp(
        self, parents: ParentStore, path: Path, doc_id: str, old: LedgerEntry | None, entry: LedgerEntry, size: int, file_stat: Any = None
    ) -> LedgerEntry:
        """Record name, size, time and the file as seen (``file_stat``) on a document just written (one
        SQLite write after the protocol's commit: a crash between leaves it unnamed, shown by its file
        name, and read again by the next ingest), and send the aliases of content that changed to be
        ingested on their own."""
        stamped = entry.model_copy(
            update={"name": self.name(path, doc_id, old), "size": size, "ingested_at": now(), "hidden": False, "file_stat": file_stat}
        )
        parents.put_ledger(doc_id, stamped)
        if old is not None and old.content_hash != entry.content_hash:
            for alias_id, alias in parents.ledger().items():
                if alias.alias_of == doc_id:
                    parents.put_ledger(alias_id, alias.model_copy(update={"rebuild": True}))
            if self.owners.get(old.content_hash or "") == doc_id:
                del self.owners[old.content_hash or ""]
        if entry.content_hash:
            self.owners.setdefault(entry.content_hash, doc_id)
        return stamped

    def keep(self, parents: ParentStore, path: Path, doc_id: str, old: LedgerEntry) -> None:
        """An unchanged document: name it if it was written before names, show it again if it was hidden."""
        if old.name and not old.hidden:
            return
        parents.put_ledger(doc_id, old.model_copy(update={"name": self.name(path, doc_id, old), "hidden": False}))


def query_scope(store: Path | Settings, doc: str | None) -> tuple[Catalog, dict[str, str] | None]:
    """The catalog of a store for naming sources, and the filter for ``--doc NAME`` (the content's doc_id:
    an alias searches its owner's references). Read before any model loads; creates nothing.

    Raises:
        StoreUnavailable: no store at ``store``; UnknownDocument: ``doc`` names no document, or several.
    """
    catalog = Catalog.read(store)
    return catalog, ({"doc_id": catalog.owner(catalog.resolve(doc))} if doc else None)


def name_sources(answer: Any, catalog: Catalog | None) -> Any:
    """Give every source of an ``Answer`` the names of its document (all of them, when aliases share it);
    without a catalog (it could not be read just now) its file name, so no answer goes out unnamed."""
    for source in answer.sources:
        known = catalog is not None and source.doc_id in catalog.ledger
        source.names = catalog.names_of(source.doc_id) if known else [PurePosixPath(source.doc_id).name]  # type: ignore[union-attr]
    return answer


SAMPLE_NAME = "acl2020.acl-main.447.pdf"  # the bundled sample (samples/)


def only_sample(catalog: Catalog) -> bool:
    """Whether the store holds the bundled sample and nothing else (``query`` then suggests ingesting your own)."""
    return bool(catalog.ledger) and all(PurePosixPath(d).name == SAMPLE_NAME for d in catalog.ledger)
