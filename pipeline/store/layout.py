"""Collection names, metadata keys and the id scheme, defined once for ingest, query and checks."""

from __future__ import annotations

import uuid
from enum import Enum
from pathlib import Path

from pipeline.models import RefKind

# A fixed namespace so the same document and ordinal give the same id on every machine and run.
NAMESPACE = uuid.UUID("6f1c8a52-3d7e-5b1a-9c4e-2a7d0b5e8f13")

# Metadata keys carried by every node (and so by every Qdrant payload).
KIND = "kind"
PARENT_ID = "parent_id"
DOC_ID = "doc_id"
PAGES = "pages"
READABLE_ID = "readable_id"
FILE_NAME = "file_name"
CONTENT_HASH = "content_hash"
TEXT_HASH = "text_hash"
# Where each page starts in a document's text: a Document's metadata key at load, and the docstore
# collection that keeps it per document (so an extractive answer cites a sentence's own page).
PAGE_OFFSETS = "page_offsets"
# LlamaIndex's payload key holding a reference's node JSON (with its text): read by retrieval (the
# reranker) and by ``docs show`` (summaries and questions), so both sides name it from here.
NODE_CONTENT = "_node_content"

# Never embedded and never shown to the LLM: ids and bookkeeping only, so that extractor output
# and ids do not leak into the vectors of other nodes.
HIDDEN_KEYS = [KIND, PARENT_ID, DOC_ID, PAGES, READABLE_ID, CONTENT_HASH, TEXT_HASH, FILE_NAME]


class Collection(str, Enum):
    """The four Qdrant collections, by suffix after the configured prefix.

    Every reference kind a mode may want alone has a collection of its own, so no search needs a
    ``kind`` filter: embedded Qdrant evaluates filters point by point in Python, which made filtered
    searches 5-6x slower than plain ones at 20k points. PARENTS holds each parent's self-reference
    (the whole parent text embedded); the parent nodes themselves live in the disk docstore.
    """

    CHILDREN = "children"
    PARENTS = "parents"
    SUMMARIES = "summaries"
    QUESTIONS = "questions"


KIND_TO_COLLECTION: dict[RefKind, Collection] = {
    RefKind.CHUNK_128: Collection.CHILDREN,
    RefKind.CHUNK_256: Collection.CHILDREN,
    RefKind.CHUNK_512: Collection.CHILDREN,
    RefKind.PARENT: Collection.PARENTS,
    RefKind.SUMMARY: Collection.SUMMARIES,
    RefKind.QUESTION: Collection.QUESTIONS,
}


def collection_name(prefix: str, collection: Collection) -> str:
    return f"{prefix}_{collection.value}"


def doc_id_for(path: Path) -> str:
    """Document identity: the resolved absolute path, POSIX style, so re-runs from any cwd agree."""
    return path.expanduser().resolve().as_posix()


def parent_id_for(doc_id: str, ordinal: int, text_hash: str) -> str:
    """Content-addressed: same document, position and text → same id on every run and machine."""
    # Qdrant accepts only UUIDs or integers as point ids; readable ids live in metadata.
    return str(uuid.uuid5(NAMESPACE, f"{doc_id}#p{ordinal}:{text_hash}"))


def ref_id_for(parent_id: str, kind: RefKind, ordinal: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{parent_id}/{kind.value}/{ordinal}"))


def readable_parent_id(doc_id: str, ordinal: int) -> str:
    return f"{Path(doc_id).name}#p{ordinal}"


def display_parent_id(readable_id: str) -> str:
    """``paper.pdf#p8`` as users see it: ``paper.pdf#parent-8``, which cannot be read as page 8.

    The stored metadata keeps ``#p8``: it is part of every parent's content hash, so renaming it in
    storage would miss the ingest cache and re-embed (and re-enrich) every existing store.
    """
    name, sep, tail = readable_id.rpartition("#p")
    return f"{name}#parent-{tail}" if sep and tail.isdigit() else readable_id
