"""The store's own small query types: a payload filter (``Where``) and a BM25 query vector (``Sparse``).

Why not qdrant-client's ``models.Filter`` and ``models.SparseVector``: importing anything from
``qdrant_client`` runs its package ``__init__``, which imports the sync and async clients and their
pydantic models (~0.6 s of CPU in every new process). A query process on the embedded engine never
talks to a server, so its path (``store.qdrant.search``, ``payloads``) takes these plain types and the
edge engine turns them into its own; only a server or local-mode client gets qdrant-client's models,
built on demand by ``to_models`` / ``sparse_model``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Scalar = str | int | bool


@dataclass(frozen=True)
class Where:
    """Points whose payload matches every condition: ``match_any`` (key → any of the values) and
    ``match`` (key → this value), and without the named vector ``without_vector`` (a backfill's
    rest). Integers are matched as an equal range (``gte == lte == value``), as Qdrant matches numbers
    without an integer index; strings and booleans by value."""

    match_any: Mapping[str, Sequence[Scalar]] = field(default_factory=dict)
    match: Mapping[str, Scalar] = field(default_factory=dict)
    without_vector: str | None = None

    def __bool__(self) -> bool:
        return bool(self.match_any or self.match or self.without_vector is not None)


@dataclass(frozen=True)
class Sparse:
    """A sparse query vector (BM25 token ids and weights)."""

    indices: list[int]
    values: list[float]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def to_edge(where: Where | None) -> Any:
    """``where`` as a qdrant-edge filter (None for no condition)."""
    if not where:
        return None
    import qdrant_edge as qe

    must: list[Any] = [qe.FieldCondition(key, match=qe.MatchAny(list(values))) for key, values in where.match_any.items()]
    for key, value in where.match.items():
        if _is_int(value):
            must.append(qe.FieldCondition(key, range=qe.RangeFloat(gte=value, lte=value)))
        else:
            must.append(qe.FieldCondition(key, match=qe.MatchValue(value)))
    must_not = [qe.HasVectorCondition(where.without_vector)] if where.without_vector is not None else None
    return qe.Filter(must=must or None, must_not=must_not)


def to_models(where: Any) -> Any:
    """``where`` as qdrant-client's ``models.Filter``; a ``models.Filter`` (or None) is returned as is."""
    if where is None or not isinstance(where, Where):
        return where
    if not where:
        return None
    from qdrant_client import models

    must: list[Any] = [models.FieldCondition(key=key, match=models.MatchAny(any=list(values))) for key, values in where.match_any.items()]
    for key, value in where.match.items():
        if _is_int(value):
            must.append(models.FieldCondition(key=key, range=models.Range(gte=value, lte=value)))
        else:
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    must_not = [models.HasVectorCondition(has_vector=where.without_vector)] if where.without_vector is not None else None
    return models.Filter(must=must or None, must_not=must_not)


def sparse_model(vector: Any) -> Any:
    """A ``Sparse`` as qdrant-client's ``models.SparseVector``; anything else as is."""
    if not isinstance(vector, Sparse):
        return vector
    from qdrant_client import models

    return models.SparseVector(indices=vector.indices, values=vector.values)
