"""``pipeline check [--repair] [--deep]``: find every kind of damage and rebuild from what the store holds.

The pure comparison of ledger, engine and docstore is ``store/check.py``; this module adds what
needs the ingest side: the ingest lock, the vectors compared with the embeddings the ingest cache
holds (a sample of parents, or all with ``--deep``), collections the engine cannot open or read, and
the rebuild. A rebuild writes a document's references again from its parents in the docstore and the
cache (no embedding call when the cache has the vectors, which it has unless it was lost) through
the ledger protocol; summaries and questions that survived are kept, the rest are left to
``pipeline enrich`` (whose LLM output is cached too). Nothing here advises ``check --repair`` for a
problem ``check --repair`` cannot fix: what it cannot rebuild it names, with the command that can.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.providers.embeddings import embed_dim
from pipeline.errors import StoreDamaged, StoreLocked, StoreUnavailable
from pipeline.store import qdrant as qstore
from pipeline.store.check import CheckReport, Problem, _verified, check_store, salvage_docstore
from pipeline.store.docstore import ParentStore
from pipeline.store.state import fleet, open_parents
from pipeline.store.layout import KIND_TO_COLLECTION, Collection
from pipeline.store.ledger import ENRICH_COLLECTIONS, Change, LedgerEntry, Op, entry_for_nodes

logger = logging.getLogger(__name__)

SAMPLE_PARENTS = 16  # parents whose vectors a plain `check` compares with the cache (all with --deep)
MIN_COSINE = 0.999  # stored vector vs cached embedding: float32 round trips give > 0.99999


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def run_check(settings: Settings, repair: bool, deep: bool = False) -> CheckReport:
    """Check (and with ``repair`` rebuild) a store; see the module docstring.

    Raises:
        StoreLocked: an ingest (or the service) holds the store.
    """
    from filelock import Timeout

    from pipeline.ingest.run import store_lock

    lock = store_lock(settings, timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise StoreLocked(f"store {settings.store} is busy: another process holds its ingest lock ({exc.lock_file}); wait for it") from exc
    try:
        return _run_locked(settings, repair, deep)
    finally:
        lock.release()


def _run_locked(settings: Settings, repair: bool, deep: bool) -> CheckReport:
    early: list[Problem] = []
    done: list[str] = []
    path = settings.docstore_path
    cache_path = settings.cache_path
    in_files = not fleet(settings)  # fleet mode: PostgreSQL checks its own pages; no file to scan or move aside
    if in_files and cache_path.exists() and (damage := _verified(cache_path)):
        early.append(Problem(kind="damaged-cache", detail=str(damage)))
        if repair:
            aside = cache_path.with_name(f"cache.sqlite.damaged-{_stamp()}")
            cache_path.rename(aside)
            done.append(f"moved the damaged ingest cache to {aside.name}; the next ingest starts a new one")
    if in_files and (damage := _verified(path)):
        early.append(Problem(kind="damaged-docstore", detail=str(damage)))
        if not repair:
            return CheckReport(ok=False, documents=0, parents=0, problems=early)
        aside, rows = salvage_docstore(path)
        done.append(f"moved the damaged docstore to {aside.name}; salvaged {rows} readable rows into a new docstore.sqlite")
    client = _open(settings, repair, early, done)
    if client is None:
        return CheckReport(ok=False, documents=0, parents=0, problems=early, repaired=done)
    parents = open_parents(settings)
    from pipeline.ingest.cache import CountingCache

    cache = CountingCache.for_settings(settings)
    try:
        from pipeline.ingest.run import Ingestor

        ingestor = Ingestor(settings, enrich=False, client=client)  # models load only if the cache misses
        fingerprint = ingestor.phase1_fingerprint(client)  # with the store's own model
        dim = embed_dim(ingestor.embedder)
        _, per_parent = ingestor._transforms(dim)
        collections = qstore.names(settings)
        ledger = parents.ledger()  # read once: the vector check and the comparison see the same entries
        corrupt, notes = verify_vectors(client, collections, parents, ledger, cache, per_parent, fingerprint, deep)
        early.extend(notes)
        report = check_store(client, collections, parents, repair=repair, corrupt=corrupt, ledger=ledger)
        if repair:
            drop = {c: "stored vectors differ from their cached embeddings" for c, ids in corrupt.items() if ids}
            drop.update({c: "the engine cannot read it" for c in report.damaged})
            for coll, why in drop.items():
                if qstore.with_retries(client.collection_exists)(collections[coll]):
                    qstore.with_retries(client.delete_collection)(collections[coll])
                    done.append(f"dropped {collections[coll]} ({why}); its references are written again from the docstore and the cache")
            qstore.ensure_collections(client, settings, ingestor.embedder.model_name, dim)
            if report.rebuild:
                done.extend(rebuild(ingestor, client, collections, parents, cache, per_parent, fingerprint, report.rebuild))
            if upgraded := qstore.upgrade_layout(client):
                done.append(f"rewrote {', '.join(upgraded)} in the current engine layout (on disk, int8-quantized search)")
            after = check_store(client, collections, parents, repair=False)
            left = [p for p in after.problems if p.kind not in CheckReport.NOTES]
            report = report.model_copy(update={"points": after.points, "documents": after.documents, "parents": after.parents})
            if left:
                done.append("still to do: " + "; ".join(f"{p.kind} {p.doc_id or ''} {p.detail}".strip() for p in left))
    finally:
        parents.close()
        client.close()
    if any(p.kind == "damaged-docstore" for p in early):
        lost = sorted({p.doc_id for p in report.problems if p.kind == "orphan-reference" and p.doc_id})
        if lost:
            done.append(f"ingest these {len(lost)} documents again (unchanged text comes from the cache): {' '.join(lost)}")
    damage = [p for p in early if p.kind not in CheckReport.NOTES]
    return report.model_copy(update={"ok": report.ok and not damage, "problems": [*early, *report.problems], "repaired": [*done, *report.repaired]})


def _open(settings: Settings, repair: bool, early: list[Problem], done: list[str]) -> Any:
    """The store's client; a collection the engine cannot open is reported (``damaged-collection``)
    and, with ``repair``, moved aside so the rest opens (its references are rebuilt later)."""
    names = list(qstore.names(settings).values())
    for _ in range(len(names) + 1):
        try:
            return qstore.open_client(settings)
        except StoreLocked:
            raise
        except StoreUnavailable as exc:
            bad = _damaged_collection(settings, exc, names)
            if bad is None:
                raise
            early.append(Problem(kind="damaged-collection", detail=f"{bad.name}: the engine cannot open it ({_short(exc)})"))
            if not repair:
                return None
            aside = bad.with_name(f".{bad.name}.damaged-{_stamp()}")
            bad.rename(aside)
            done.append(f"moved the damaged collection {bad.name} aside ({aside.name}); its references are written again from the docstore and the cache")
    return None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "…"


def _damaged_collection(settings: Settings, exc: BaseException, names: Sequence[str]) -> Path | None:
    """The embedded collection folder an open error names, if any (edge or local mode)."""
    text = str(exc)
    for root in (settings.edge_path, settings.qdrant_path / "collection"):
        for name in names:
            if re.search(rf"(^|[/\\]){re.escape(name)}([/\\:\s)]|$)", text) and (root / name).is_dir():
                return root / name
    if isinstance(exc, StoreDamaged):
        p = Path(exc.path)
        for cand in (p, *p.parents):
            if cand.name in names and cand.is_dir():
                return cand
    return None


def cached_references(parent: Any, per_parent: Sequence[Any], cache: Any) -> list[Any] | None:
    """A parent's references with their embeddings, as the ingest cache holds them, or None.

    The lookup ``IngestionPipeline.run`` does (``get_transformation_hash`` of the input nodes and each
    transform), without running any transform: verifying never embeds.
    """
    from llama_index.core.ingestion.pipeline import get_transformation_hash

    nodes = [parent]
    for transform in per_parent:
        found = cache.get(get_transformation_hash(nodes, transform))
        if found is None:
            return None
        nodes = found
    return [n for n in nodes if n.embedding is not None]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    if not (math.isfinite(na) and math.isfinite(nb)) or na == 0 or nb == 0:
        return -1.0
    return dot / (na * nb)


def _stored_vectors(client: Any, name: str, ids: Sequence[str]) -> dict[str, list[float]]:
    out = {}
    for start in range(0, len(ids), 256):
        for p in qstore.with_retries(client.retrieve)(name, ids=list(ids[start : start + 256]), with_vectors=True, with_payload=False):
            vec = p.vector.get("", None) if isinstance(p.vector, dict) else p.vector
            if vec is not None:
                out[str(p.id)] = list(vec)
    return out


def verify_vectors(
    client: Any,
    collections: dict[Collection, str],
    parents: ParentStore,
    ledger: dict[str, LedgerEntry],
    cache: Any,
    per_parent: Sequence[Any],
    fingerprint: str,
    deep: bool,
) -> tuple[dict[Collection, list[str]], list[Problem]]:
    """Points whose stored vector differs from its cached embedding, per collection.

    Chunk and self references are compared with the ingest cache (a sample of ``SAMPLE_PARENTS``
    parents, every parent with ``deep``); summaries and questions, whose embeddings the cache keys by
    LLM, are checked for what every embedding of the store's model has: finite, of the norm the cached
    ones have. Parents without a cache entry are counted as unverified (a note, not damage).
    ``ledger``: the store's, as the caller read it (``check_store`` compares the same entries).
    """
    corrupt: dict[Collection, list[str]] = defaultdict(list)
    notes: list[Problem] = []
    pids = sorted({p for e in ledger.values() if e.pending is None and e.fingerprint == fingerprint for p in e.parents})
    sample = pids if deep else random.Random(0).sample(pids, min(SAMPLE_PARENTS, len(pids)))
    exists = {c: qstore.with_retries(client.collection_exists)(n) for c, n in collections.items()}
    norms: list[float] = []
    unverified = 0
    for pid in sample:
        parent = parents.get(pid)
        refs = cached_references(parent, per_parent, cache) if parent is not None else None
        if refs is None:
            unverified += 1
            continue
        by_coll: dict[Collection, dict[str, list[float]]] = defaultdict(dict)
        for ref in refs:
            by_coll[KIND_TO_COLLECTION[_kind(ref)]][ref.node_id] = ref.embedding
        for coll, want in by_coll.items():
            if not exists.get(coll):
                continue
            try:
                have = _stored_vectors(client, collections[coll], sorted(want))
            except Exception as exc:  # an unreadable collection is damage, not a crash of `check`
                logger.debug("reading vectors of %s failed: %s", collections[coll], exc)
                corrupt[coll].extend(sorted(want))
                continue
            for rid, vec in have.items():
                norms.append(math.sqrt(sum(x * x for x in want[rid])))
                if _cosine(vec, want[rid]) < MIN_COSINE:
                    corrupt[coll].append(rid)
    if norms:  # summaries and questions: finite and of the model's norm
        lo, hi = min(norms) * 0.98, max(norms) * 1.02
        for coll in ENRICH_COLLECTIONS:
            ids = sorted({i for e in ledger.values() if e.pending is None for i in e.refs.get(coll.value, [])})
            ids = ids if deep else random.Random(0).sample(ids, min(SAMPLE_PARENTS * 2, len(ids)))
            if not ids or not exists.get(coll):
                continue
            try:
                have = _stored_vectors(client, collections[coll], ids)
            except Exception:
                corrupt[coll].extend(ids)
                continue
            for rid, vec in have.items():
                n = math.sqrt(sum(x * x for x in vec)) if all(math.isfinite(x) for x in vec) else float("nan")
                if not (lo <= n <= hi):
                    corrupt[coll].append(rid)
    if unverified:
        notes.append(Problem(kind="unverified-vectors", detail=f"{unverified} of {len(sample)} sampled parents have no cached embeddings (a new cache, or other settings): their vectors were not compared", count=unverified))
    return {c: ids for c, ids in corrupt.items() if ids}, notes


def _kind(node: Any) -> Any:
    from pipeline.models import RefKind
    from pipeline.store import layout

    return RefKind(node.metadata[layout.KIND])


def rebuild(
    ingestor: Any, client: Any, collections: dict[Collection, str], parents: ParentStore, cache: Any, per_parent: Sequence[Any], fingerprint: str, doc_ids: Sequence[str]
) -> list[str]:
    """Write the documents' references again from their parents in the docstore and the cache.

    A document whose parents are not all in the docstore, whose entry was written with other settings,
    or whose phase-1 write was interrupted is marked for the next ``ingest`` instead (its file has the
    text); summaries and questions still stored are kept, the others left to ``pipeline enrich``.
    """
    from llama_index.core.ingestion import IngestionPipeline

    from pipeline.ingest.write import DocumentWriter

    writer = DocumentWriter(client, collections, parents)
    pipe = IngestionPipeline(transformations=list(per_parent), cache=cache)
    out: list[str] = []
    marked: list[str] = []
    rebuilt = 0
    redo_enrich = 0
    embedded_before = _usage(ingestor)
    for doc_id in doc_ids:
        entry = parents.ledger_entry(doc_id)
        if entry is None:
            continue
        nodes = [parents.get(pid) for pid in entry.parents]
        if entry.interrupted_write or entry.fingerprint != fingerprint or any(n is None for n in nodes):
            parents.put_ledger(doc_id, entry.model_copy(update={"content_hash": None, "rebuild": True}))
            marked.append(doc_id)
            continue
        refs: list[Any] = []
        for parent in nodes:
            refs.extend(n for n in pipe.run(nodes=[parent]) if n.embedding is not None)
        final = entry_for_nodes(entry.content_hash, fingerprint, nodes, refs)  # type: ignore[arg-type]
        present = _present(client, collections, entry)
        for pid, enrichment in entry.enriched.items():
            if pid not in final.parents:
                continue
            kept = {c.value: [i for i in enrichment.refs.get(c.value, []) if i in present[c]] for c in ENRICH_COLLECTIONS}
            whole = all(len(kept[c.value]) == len(enrichment.refs.get(c.value, [])) for c in ENRICH_COLLECTIONS)
            final = final.with_enrichment(pid, enrichment.fingerprint if whole else None, kept)
            redo_enrich += 0 if whole else 1
        writer.apply(doc_id, Change(Op.WRITE, final, parents=nodes, refs=refs))  # type: ignore[arg-type]
        rebuilt += 1
    if rebuilt:
        out.append(f"rebuilt the references of {rebuilt} documents from the docstore and the ingest cache ({_usage(ingestor) - embedded_before} texts embedded)")
    if redo_enrich:
        out.append(f"{redo_enrich} parents lost summaries or questions: run `pipeline enrich` (cached LLM output is reused)")
    if marked:
        out.append(f"marked {len(marked)} documents for rebuild (their text is not all in the docstore, or other settings wrote them): run `pipeline ingest` on them again: {' '.join(marked)}")
    return out


def _present(client: Any, collections: dict[Collection, str], entry: LedgerEntry) -> dict[Collection, set[str]]:
    out: dict[Collection, set[str]] = {}
    for coll in ENRICH_COLLECTIONS:
        ids = entry.refs.get(coll.value, [])
        if not ids or not qstore.with_retries(client.collection_exists)(collections[coll]):
            out[coll] = set()
            continue
        found = qstore.with_retries(client.retrieve)(collections[coll], ids=list(ids), with_vectors=False, with_payload=False)
        out[coll] = {str(p.id) for p in found}
    return out


def _usage(ingestor: Any) -> int:
    return ingestor.embedder.usage.texts if hasattr(ingestor.embedder, "usage") else 0

