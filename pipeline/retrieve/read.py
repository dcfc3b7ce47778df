"""Stage 4 of retrieval: read the ranked parents from the docstore, as ``SourceRef``s, until ``top_k`` are found.

The docstore keeps LlamaIndex's node JSON (``{"__data__": {"id_", "text", "metadata", ...}, "__type__"}``,
written by ``KVDocumentStore``, readable by stock LlamaIndex code). A query reads the three things it
shows from that JSON itself, with no LlamaIndex node built: importing LlamaIndex costs a new process
~1 s of CPU, and a node's validation ~0.1 ms a parent. Only the LLM answer path (``retrieve/llama.py``)
turns the same rows into LlamaIndex nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.models import MatchedRef, SourceRef
from pipeline.store import layout
from pipeline.store.docstore import NAMESPACE

logger = logging.getLogger(__name__)

DATA = f"{NAMESPACE}/data"  # the docstore collection holding each parent's node JSON (KVDocumentStore's)


def parent_rows(parents: Any, parent_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored node JSON of each given parent that exists, by id, in one query (``ParentStore.get_many``
    reads the same rows, then builds LlamaIndex nodes)."""
    return parents.kv.get_many(list(parent_ids), DATA)


def node_data(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The node's fields of a stored row (``KVDocumentStore`` wraps them in ``__data__``)."""
    return row.get("__data__", row)


def unique_refs(matched: Iterable[MatchedRef]) -> list[MatchedRef]:
    """One entry per reference: one found by both searches keeps its cosine as ``score`` and carries
    its BM25 score as ``bm25_score`` (it was listed twice, e.g. ``parent`` two times)."""
    out: dict[str, MatchedRef] = {}
    for m in matched:
        ref = MatchedRef(kind=m.kind, node_id=m.node_id, score=m.score, via=m.via)
        have = out.get(ref.node_id)
        if have is None:
            out[ref.node_id] = ref
        elif ref.via == "bm25":
            have.bm25_score = ref.score
        else:  # the dense hit came second: it leads, the BM25 one rides along
            out[ref.node_id] = ref.model_copy(update={"bm25_score": have.score})
    return list(out.values())


def to_source(row: Mapping[str, Any], score: float, matched: Sequence[MatchedRef]) -> SourceRef:
    """A parent's stored row, its score and the references that matched it → a ``SourceRef``
    (dense references first, each side best first)."""
    data = node_data(row)
    meta = data.get("metadata") or {}
    refs = sorted(matched, key=lambda r: (r.via != "dense", -r.score))
    return SourceRef(
        parent_id=data["id_"],
        readable_id=layout.display_parent_id(meta.get(layout.READABLE_ID, "")),
        doc_id=meta.get(layout.DOC_ID, ""),
        pages=list(meta.get(layout.PAGES, [])),
        score=round(float(score or 0.0), 6),
        text=data.get("text", ""),
        matched=unique_refs(refs),
    )


def read_parents(
    parents: Any, ranked: Sequence[tuple[str, float]], matched: Mapping[str, list[MatchedRef]], top_k: int
) -> list[tuple[SourceRef, dict[str, Any]]]:
    """Stage 4: the first ``top_k`` ranked parents that exist, each with its stored row.

    The parents still wanted are read in one query; more only if some were missing (a reference whose
    parent is gone: ``pipeline check --repair`` removes it).
    """
    out: list[tuple[SourceRef, dict[str, Any]]] = []
    start = 0
    while len(out) < top_k and start < len(ranked):
        batch = ranked[start : start + top_k - len(out)]
        start += len(batch)
        rows = parent_rows(parents, [pid for pid, _ in batch])
        for parent_id, score in batch:
            row = rows.get(parent_id)
            if row is None:
                logger.warning("reference points to missing parent %s", parent_id)
                continue
            out.append((to_source(row, score, matched.get(parent_id, [])), row))
    return out
