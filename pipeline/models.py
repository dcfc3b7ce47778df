"""Typed records that cross module boundaries: kinds, modes, sources, answers and run statistics."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class RefKind(str, Enum):
    """What a reference node is; every reference points at exactly one parent.

    CHUNK_128/256/512: a child chunk of the parent of that many tokens.
    PARENT: the parent text itself (the notebook's "base" retrieval).
    SUMMARY: an LLM-written summary of the parent.
    QUESTION: one of the questions the parent answers, written by the LLM.
    """

    CHUNK_128 = "chunk-128"
    CHUNK_256 = "chunk-256"
    CHUNK_512 = "chunk-512"
    PARENT = "parent"
    SUMMARY = "summary"
    QUESTION = "question"


CHUNK_KINDS = (RefKind.CHUNK_128, RefKind.CHUNK_256, RefKind.CHUNK_512)


class Mode(str, Enum):
    """Which references a query is matched against.

    BASE: the parent self-references only (plain 1024-token chunks, the baseline).
    CHUNK: the 128/256/512-token child chunks, plus the self-references.
    METADATA: the LLM summaries and questions, plus the self-references.
    ALL: every reference kind, fused per parent.
    """

    BASE = "base"
    CHUNK = "chunk"
    METADATA = "metadata"
    ALL = "all"


class MatchedRef(BaseModel):
    """One reference that led to a parent."""

    kind: RefKind
    node_id: str
    score: float
    via: str = "dense"  # which search found it: "dense" (cosine) or "bm25" (BM25 score)
    bm25_score: float | None = None  # found by both: ``score`` is the cosine, this the BM25 score


class SourceRef(BaseModel):
    """A parent returned by retrieval, with the references that matched it."""

    parent_id: str
    readable_id: str = ""
    doc_id: str
    names: list[str] = Field(default_factory=list)  # the document's names (`docs list`); two when aliases share it
    pages: list[int] = Field(default_factory=list)
    score: float  # relative to this query's other candidates (the best is often 1.0): not a confidence
    score_kind: str = "relative"  # says so in the JSON; ``Answer.confidence`` is the absolute estimate
    text: str
    matched: list[MatchedRef] = Field(default_factory=list)


class QueryStats(BaseModel):
    """What a query process did; ``embedded_texts`` must stay 0 after ingestion."""

    embedded_texts: int = 0
    embedded_queries: int = 0
    references_fetched: int = 0
    retrieve_ms: float = 0.0
    embed_ms: float = 0.0  # the part of retrieve_ms spent embedding the query
    rerank_ms: float = 0.0  # the part of retrieve_ms spent in the cross-encoder
    stages: list[str] = Field(default_factory=list)  # e.g. ["dense", "bm25-relative", "rerank"]
    answer_ms: float = 0.0


class Citation(BaseModel):
    """One sentence of an extractive answer (or the evidence beside an LLM answer), where it stands."""

    text: str
    doc_id: str
    pages: list[int] = Field(default_factory=list)
    parent_id: str
    source: int  # 1-based index into ``sources``
    # How this sentence ranked among the sources' sentences: NOT the sources' 0-1 relative scale.
    # ``cross_encoder_logit`` (the reranker's raw logit, unbounded, e.g. 6.3) or ``term_overlap`` (the
    # IDF-weighted share of the query's words, when no cross-encoder is loaded); ``score_kind`` says which.
    score: float
    score_kind: str = "term_overlap"


class Answer(BaseModel):
    """The result of ``query``: the answer (None with --retrieve-only), its sources and stats.

    ``answer_mode`` says how ``answer`` was made: ``extractive`` (sentences of the sources, each in
    ``citations``), ``llm`` (synthesis, with the supporting sentences in ``citations``) or ``none``.

    ``confidence`` estimates the probability that the top sources hold the answer (calibrated on the
    labelled sets, pipeline/retrieve/confidence.py); ``answerable`` is ``confidence >=
    retrieval.min_confidence`` (or the request's ``min_confidence``) in the documents' language. When it
    is false, ``reason`` says why (``low_confidence``, ``language``, ``no_sources``), ``answer`` is None
    and no LLM is asked. ``replaced`` says why an LLM answer was replaced by the extract ("" if not).
    """

    query: str
    mode: Mode
    top_k: int
    confidence: float | None = None  # None: not measured (an eval run that skips it)
    answerable: bool = True
    reason: str = ""
    message: str = ""  # the plain sentence shown when not answerable
    signals: dict[str, float | str | None] = Field(default_factory=dict)
    answer: str | None = None
    answer_mode: str = "none"
    replaced: str = ""
    citations: list[Citation] = Field(default_factory=list)
    sources: list[SourceRef] = Field(default_factory=list)
    stats: QueryStats = Field(default_factory=QueryStats)


class FileResult(BaseModel):
    """What happened to one input file during ingestion."""

    path: str
    doc_id: str = ""
    status: str  # added | updated | unchanged | removed | failed | skipped (a folder's file of an unsupported type)
    parents: int = 0
    reason: str = ""


class IngestStats(BaseModel):
    """Counters of one ingest run; with unchanged input ``llm_calls`` and ``embedded_texts`` are 0."""

    documents: int = 0
    parents: int = 0
    references: dict[str, int] = Field(default_factory=dict)
    llm_calls: int = 0
    embedded_texts: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    parents_reused: int = 0
    parents_rebuilt: int = 0
    files_added: int = 0
    files_updated: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    files_failed: int = 0
    files_skipped: int = 0  # unsupported types in the given folders, each named in ``files`` (not a failure)
    enrich: str = ""  # done | skipped (auto, LLM whose references do not help) | later | none (no LLM)
    parents_enriched: int = 0  # summaries and questions written by this run
    parents_unenriched: int = 0  # parents of the ingested documents still without them
    summaries: int = 0
    questions: int = 0  # written by this run (the prompt asks for ``ingest.questions`` per parent)
    seconds: float = 0.0
    store_seconds: float = 0.0  # of ``seconds``, in Qdrant: upserts (with BM25 vectors), deletes, flushes, optimize


class IngestReport(BaseModel):
    """The ``ingest --json`` object: stats plus one entry per file."""

    store: str
    stats: IngestStats
    files: list[FileResult] = Field(default_factory=list)
