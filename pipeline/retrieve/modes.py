"""Mode → which collections to search and which reference kinds to keep there."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.models import CHUNK_KINDS, Mode, RefKind
from pipeline.store.layout import Collection


@dataclass(frozen=True)
class Search:
    """One vector search: a collection and the reference kinds wanted from it."""

    collection: Collection
    kinds: tuple[RefKind, ...]


# As in the seed notebook, every reference mode also searches the parent's self-reference: chunk and
# metadata references are added to what base finds, never substituted for it.
PARENTS = Search(Collection.PARENTS, (RefKind.PARENT,))
CHUNKS = Search(Collection.CHILDREN, CHUNK_KINDS)
SUMMARIES = Search(Collection.SUMMARIES, (RefKind.SUMMARY,))
QUESTIONS = Search(Collection.QUESTIONS, (RefKind.QUESTION,))

MODE_SEARCHES: dict[Mode, tuple[Search, ...]] = {
    Mode.BASE: (PARENTS,),
    Mode.CHUNK: (CHUNKS, PARENTS),
    Mode.METADATA: (SUMMARIES, QUESTIONS, PARENTS),
    Mode.ALL: (CHUNKS, PARENTS, SUMMARIES, QUESTIONS),
}


def searches_for(mode: Mode) -> tuple[Search, ...]:
    return MODE_SEARCHES[mode]
