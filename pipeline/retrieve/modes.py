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


MODE_SEARCHES: dict[Mode, tuple[Search, ...]] = {
    Mode.BASE: (Search(Collection.CHILDREN, (RefKind.PARENT,)),),
    Mode.CHUNK: (Search(Collection.CHILDREN, CHUNK_KINDS),),
    Mode.METADATA: (Search(Collection.SUMMARIES, (RefKind.SUMMARY,)), Search(Collection.QUESTIONS, (RefKind.QUESTION,))),
    Mode.ALL: (
        Search(Collection.CHILDREN, (*CHUNK_KINDS, RefKind.PARENT)),
        Search(Collection.SUMMARIES, (RefKind.SUMMARY,)),
        Search(Collection.QUESTIONS, (RefKind.QUESTION,)),
    ),
}


def searches_for(mode: Mode) -> tuple[Search, ...]:
    return MODE_SEARCHES[mode]
