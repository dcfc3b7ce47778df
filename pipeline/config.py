"""The one configuration object, built once at the edge (CLI callback, service factory) and passed down.

Sources, highest first: constructor arguments, ``PIPELINE_*`` environment variables (nested with
``__``, e.g. ``PIPELINE_LLM__PROVIDER=openai``), the established ``QDRANT_URL``, ``QDRANT_API_KEY``
and ``OPENAI_API_KEY`` (and ``PIPELINE_API_TOKEN`` for ``service.api_token``), then a TOML file (``PIPELINE_CONFIG`` or ``./pipeline.toml``), then defaults.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.models import RefKind

DOCSTORE_FILE = "docstore.sqlite"  # the store's file names, defined once
CACHE_FILE = "cache.sqlite"
MAX_TOP_K = 50  # the one bound of top_k: settings, CLI, API schema and engine (retrieve/engine.check_top_k)


class EmbedProvider(str, Enum):
    """ONNX: int8 all-MiniLM-L6-v2 in-process, offline. OPENAI: OpenAI (or compatible) embeddings API."""

    ONNX = "onnx"
    OPENAI = "openai"


class LLMProvider(str, Enum):
    """LLAMACPP: a GGUF model in-process via xllamacpp, offline. OPENAI: OpenAI or any compatible
    base URL. NONE: no LLM; summaries and questions are skipped and ``query`` only retrieves."""

    LLAMACPP = "llamacpp"
    OPENAI = "openai"
    NONE = "none"


class EnrichPolicy(str, Enum):
    """When ``ingest`` writes summaries and questions: always a second phase, after the documents are searchable.

    AUTO: now if the LLM's summaries and questions measurably help retrieval (OpenAI or a compatible
    endpoint, Qwen, a custom GGUF); skipped with SmolLM2, whose references do not (docs/quality.md:
    ``all`` = ``chunk``) and cost ~90 % of ingest time. ``pipeline enrich`` adds them at any time.
    NOW: always, right after the documents are searchable (``true`` means the same).
    LATER: never during ``ingest``; ``pipeline enrich`` does it (``false`` means the same).
    """

    AUTO = "auto"
    NOW = "now"
    LATER = "later"


class AnswerMode(str, Enum):
    """How ``query`` answers.

    AUTO: LLM synthesis when a capable generator is configured (OpenAI or compatible, Qwen, a custom
    GGUF), else extractive. EXTRACTIVE: the retrieved sentences that best answer the query, each
    cited with document and page; never invents text. LLM: synthesis by the configured LLM, with
    the same citations. NONE: sources only (as ``--retrieve-only``).
    """

    AUTO = "auto"
    EXTRACTIVE = "extractive"
    LLM = "llm"
    NONE = "none"


class Fusion(str, Enum):
    """How a parent is scored from its references.

    MAX: the best cosine score of any reference (comparable across kinds for one embedding model).
    RRF: reciprocal-rank fusion of the per-kind parent rankings (k=60), robust when kinds score differently.
    """

    MAX = "max"
    RRF = "rrf"


class HybridFusion(str, Enum):
    """How a parent's dense and BM25 (sparse) scores are combined when ``retrieval.hybrid`` is on.

    RELATIVE: each side's parent scores min-max normalised over the candidates, then weighted
    (``dense_weight`` for dense, the rest for BM25): LlamaIndex's relative score fusion.
    DBSF: like RELATIVE, normalised by mean ± 3 standard deviations (Qdrant's distribution-based fusion).
    RRF: reciprocal-rank fusion of the two parent rankings (k=60); ignores the scores' size.
    """

    RELATIVE = "relative"
    DBSF = "dbsf"
    RRF = "rrf"


class QdrantBackend(str, Enum):
    """Which Qdrant holds the collections.

    EDGE: Qdrant's own engine in-process (qdrant-edge), one shard per collection in <store>/edge; the
    embedded default. LOCAL: qdrant-client's local mode (a Python emulation) in <store>/qdrant; a
    store written by it opens in it until `pipeline migrate --to edge`. SERVER: a Qdrant server at
    ``qdrant.url`` (``QDRANT_URL`` set selects it whatever this says).
    """

    EDGE = "edge"
    LOCAL = "local"
    SERVER = "server"


class QdrantSettings(BaseModel):
    backend: QdrantBackend = Field(
        QdrantBackend.EDGE,
        description="edge (embedded engine in <store>/edge) | local (qdrant-client local mode in <store>/qdrant; "
        "a store written by it opens in it) | server (needs url); QDRANT_URL set = server",
    )
    url: str | None = Field(None, description="Qdrant server URL; unset = embedded mode in <store>/edge (env QDRANT_URL)")
    api_key: SecretStr | None = Field(None, description="Qdrant API key (env QDRANT_API_KEY)")
    prefix: str = Field("docs", description="Collection name prefix: <prefix>_children, _parents, _summaries, _questions")
    timeout: float = Field(10.0, description="Seconds per Qdrant request (server mode)")
    hnsw_ef: int | None = Field(
        None, ge=1, description="Edge: HNSW search breadth (ef) for searches that set none; unset = grows with each collection (512 up to ~94k points, 1,600 at 283k, at most 4,096): 512 found 0.996 of the exact top-30 at 100k, 1,536 found 0.996 at 283k (docs/benchmarks.md §7e). Higher = better recall, slower"
    )


# Past 4 threads one ONNX session over a small model gains little and spins idle workers; an operator
# with more cores sets embed.threads.
MAX_AUTO_THREADS = 4


class EmbedSettings(BaseModel):
    provider: EmbedProvider = Field(EmbedProvider.ONNX, description="onnx (offline MiniLM) or openai")
    model: str = Field("", description="onnx: minilm | bge-small | a folder holding an ONNX model and its tokenizer.json (unset: the model the store was built with, else the default); openai: default text-embedding-3-small")
    api_base: str | None = Field(None, description="OpenAI-compatible base URL for embeddings")
    threads: int = Field(1, ge=0, description="Embedding threads for ingest and enrich: that many ONNX batches side by side (0: every CPU this process may use, at most 4); queries and the service's embedder use 1. Default 1 by measurement (docs/benchmarks.md §3a): 2 threads embed the raw texts 1.55x as fast on 2 cores, but a whole ingest was not faster (149 s against 130 s, 4 papers)")

    def ingest_threads(self) -> int:
        """Threads for ingest and enrich: ``threads``, or with 0 (auto) the CPUs this process may use, at
        most ``MAX_AUTO_THREADS``. Batches run side by side on one 1-thread session (providers/encoder.py):
        the raw model gains 1.55x on 2 cores, a whole ingest did not (§3a), so the default stays 1."""
        if self.threads:
            return self.threads
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return max(1, min(cpus, MAX_AUTO_THREADS))
    batch_size: int = Field(8, ge=1, description="Texts (ONNX: windows of word pieces) per embedding call; 8 keeps ingest of the sample under 1 GB peak RSS (32 took 1.5 GB, docs/benchmarks.md)")
    # The four below shape a folder model's vectors (embed.model = a folder); built-in models know their own.
    pooling: Literal["mean", "cls"] = Field("mean", description="Folder model: mean over the tokens, or cls (the first token's state); a model whose output is already one vector is used as it is")
    query_prefix: str = Field("", description="Folder model: text put before every query (e.g. bge's \"Represent this sentence for searching relevant passages: \", e5's \"query: \")")
    passage_prefix: str = Field("", description="Folder model: text put before every passage (e5's \"passage: \")")
    max_length: int = Field(0, ge=0, description="Folder model: word pieces per window (0: from the folder's sentence_bert_config.json / config.json, else 512)")


class LLMSettings(BaseModel):
    provider: LLMProvider = Field(LLMProvider.LLAMACPP, description="llamacpp (offline GGUF), openai, or none")
    model: str = Field("", description="llamacpp: smollm2 | qwen2.5-coder-1.5b | path to a .gguf; openai: default gpt-4o-mini")
    gguf_sha256: str | None = Field(None, description="Expected sha256 of a custom .gguf (known models are pinned)")
    api_base: str | None = Field(None, description="OpenAI-compatible base URL (e.g. http://127.0.0.1:8080/v1)")
    threads: int = Field(1, ge=1, description="llama.cpp threads (1 is fastest on a busy 2-core box)")
    context_window: int = Field(8192, ge=1024, description="llama.cpp context size in tokens")
    max_tokens: int = Field(256, ge=16, description="Tokens per generation")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    timeout: float = Field(300.0, description="Seconds per LLM call")


class IngestSettings(BaseModel):
    parent_chunk_size: int = Field(1024, ge=64, description="Parent chunk size in tokens")
    child_chunk_sizes: list[int] = Field([128, 256, 512], description="Child chunk sizes in tokens")
    chunk_overlap: int = Field(20, ge=0, description="Child chunk overlap in tokens")
    enrich: EnrichPolicy = Field(EnrichPolicy.AUTO, description="auto | now | later: when ingest writes LLM summaries and questions (auto: only with an LLM whose references help, not SmolLM2)")
    questions: int = Field(5, ge=1, le=20, description="Questions per parent")
    pdf_passwords: dict[str, str] = Field(default_factory=dict, description="File name or path → PDF password")

    @model_validator(mode="after")
    def _overlap_fits(self) -> "IngestSettings":
        # The splitter refuses an overlap as large as a chunk, but only when it first splits a document:
        # checked here, a bad value is a configuration error before any store is opened or created.
        smallest = min(self.child_chunk_sizes, default=None)
        if smallest is not None and self.chunk_overlap >= smallest:
            raise ValueError(
                f"ingest.chunk_overlap ({self.chunk_overlap}) must be smaller than every child chunk size "
                f"(ingest.child_chunk_sizes {self.child_chunk_sizes}, the smallest {smallest})"
            )
        return self

    @field_validator("enrich", mode="before")
    @classmethod
    def _enrich_bool(cls, value: Any) -> Any:
        # The setting was a bool before the two-phase ingest: keep true/false working.
        if isinstance(value, bool) or str(value).strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return EnrichPolicy.NOW if str(value).strip().lower() in ("true", "1", "yes", "on") else EnrichPolicy.LATER
        return value


class AnswerSettings(BaseModel):
    mode: AnswerMode = Field(AnswerMode.AUTO, description="auto | extractive | llm | none (auto: llm with a capable generator, else extractive)")
    sentences: int = Field(3, ge=1, le=10, description="Sentences in an extractive answer")


class RetrievalSettings(BaseModel):
    top_k: int = Field(3, ge=1, le=MAX_TOP_K, description="Distinct parents returned")
    overfetch: int = Field(10, ge=1, description="References fetched per wanted parent")
    fusion: Fusion = Field(Fusion.MAX, description="How a parent is scored from its references")
    summary_weight: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="Fusion max: summary scores are multiplied by this before they compete with text references "
        "(docs/quality.md, tuning tables)",
    )
    question_weight: float = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="Fusion max: question scores are multiplied by this (an LLM-written question resembles any "
        "question more than a text passage does)",
    )
    support_weight: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Fusion max: a parent's dense score is its best reference plus this share of its next two "
        "(several matching chunks beat one); 0 = best reference only. 0.1: mean MRR@10 0.811 → 0.817 on the dev sets (docs/quality.md)",
    )
    hybrid: bool = Field(True, description="Also search BM25 vectors and fuse them with the dense scores (stores from before hybrid: dense only until `check --repair` or an ingest)")
    bm25_scope: Literal["parents", "all"] = Field(
        "parents",
        description="Where hybrid runs BM25: the parents' self-references only (default: the same quality as all "
        "collections on the dev sets at ~1/18 of the embedded-mode cost, docs/quality.md) or every searched collection",
    )
    hybrid_fusion: HybridFusion = Field(HybridFusion.RELATIVE, description="How dense and BM25 parent scores are fused (docs/quality.md)")
    dense_weight: float = Field(0.7, ge=0.0, le=1.0, description="Share of the dense score in relative/dbsf hybrid fusion (docs/quality.md, fusion sweep)")
    rerank: bool = Field(False, description="Re-score the top candidates with the cross-encoder before cutting to k; off by default: −0.003 MRR@10 on average over the dev sets after hybrid search, for ~0.5 s a query (docs/quality.md); per call: query --rerank, \"rerank\": true")
    rerank_candidates: int = Field(10, ge=1, le=100, description="Candidate parents the cross-encoder re-scores")
    rerank_passages: int = Field(1, ge=1, le=5, description="Best-matching reference texts per candidate given to the cross-encoder")
    rerank_first_stage_weight: float = Field(0.5, ge=0.0, le=1.0, description="Share of the first-stage score kept when blending with the cross-encoder's")
    metadata_weight: float | None = Field(
        None, gt=0.0, le=1.0, description="Sets summary_weight and question_weight both (older setting)"
    )
    rerank_model: str = Field("", description="Folder holding a cross-encoder's ONNX model and its tokenizer.json (empty: the shipped ms-marco MiniLM-L-12); used by --rerank, extract scoring and confidence")
    confidence_cross_encoder: Literal["auto", "always", "never"] = Field(
        "auto",
        description="When `confidence` also scores the top passages with the cross-encoder (~170 ms on 1 thread): auto = only where the cheaper model is unsure (0.05-0.95; ~11 % of queries; the same held-out answered/refused as always, docs/quality.md), always, or never (held-out answered 0.961 instead of 0.972)",
    )
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="A result is answerable when its confidence (calibrated probability that the top sources hold the answer, docs/quality.md) is at least this; below it the query abstains. Per call: query --min-confidence, \"min_confidence\""
    )

    @model_validator(mode="after")
    def _both_weights(self) -> "RetrievalSettings":
        if self.metadata_weight is not None:
            self.summary_weight = self.question_weight = self.metadata_weight
        return self

    def weights(self) -> dict[RefKind, float]:
        return {RefKind.SUMMARY: self.summary_weight, RefKind.QUESTION: self.question_weight}


class ServiceSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface `serve` binds (0.0.0.0 in a container)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port `serve` listens on")
    api_token: SecretStr | None = Field(None, description="Bearer token required on every route but /healthz (env PIPELINE_API_TOKEN)")
    public_docs: bool = Field(False, description="Serve /docs and /openapi.json without the token")
    max_concurrent_generations: int = Field(1, ge=1, description="LLM answers generated at once; more get 429 + Retry-After")
    generation_wait: float = Field(0.0, ge=0.0, description="Seconds a /query waits for a free generation slot before 429")
    retry_after: int = Field(5, ge=1, description="Retry-After seconds sent when generation is saturated")
    retrieval_threads: int = Field(4, ge=1, description="Worker threads that run retrieval (searches run off the event loop)")
    embed_batch_window_ms: float = Field(
        1.0,
        ge=0.0,
        le=50.0,
        description="Milliseconds the service collects concurrent queries into one embedding call (0 = no batching; bge-small is never batched); "
        "1 measured as good as 2 or 5 at 16 clients and costs a lone client ~1 ms",
    )
    embed_batch_max: int = Field(16, ge=1, description="Most queries in one batched embedding call")
    max_body_bytes: int = Field(65536, ge=1024, description="Largest request body accepted (413 above)")
    max_query_chars: int = Field(
        1000, ge=1, le=4000, description="Longest query accepted by /retrieve, /query and `pipeline query` (422 / exit 2 above): "
        "a query's cost grows with its length (a 4,000-character one cost ~100x a short one)"
    )
    header_timeout: float = Field(10.0, gt=0.0, description="Seconds a connection may take to send a request's headers (or stay idle before its first request); then it is closed (408 if headers had started)")
    body_timeout: float = Field(30.0, gt=0.0, description="Seconds a request may take to send its whole body after its headers (408 and the connection closed above)")
    shutdown_timeout: float = Field(30.0, ge=0.0, description="Seconds in-flight requests get to finish on shutdown")
    warm_llm: bool = Field(True, description="Load the LLM at startup (in the background) rather than on the first /query")
    ingest_roots: list[Path] = Field(
        default_factory=list, description="POST /ingest reads only files that resolve under these folders; empty = POST /ingest is refused (403)"
    )
    ingest_lock_timeout: float = Field(0.0, ge=0.0, description="Seconds an ingest job waits for another ingest to finish")
    ingest_max_files: int = Field(1000, ge=1, description="Files one POST /ingest may name or find in its folders (above: the job fails, nothing is ingested)")
    ingest_max_file_bytes: int = Field(100 * 1024 * 1024, ge=1, description="Larger files are skipped by ingest jobs (\"skipped: over limit\")")
    ingest_file_timeout: float = Field(120.0, gt=0.0, description="Seconds an ingest job may spend reading and parsing one file before it skips it")
    ingest_allow_hardlinks: bool = Field(
        False, description="Ingest jobs also read files with more than one name (hard links); off: such a file is skipped, as its other name may lie outside the ingest roots"
    )
    ingest_stop_timeout: float = Field(
        10.0, ge=0.0, description="Seconds a cancelled job (DELETE /jobs/{id}, shutdown) gets to stop at its next file or parent before it is abandoned"
    )
    snapshot_dir: Path | None = Field(
        None, description="Folder POST /snapshots writes into, one sub-folder per snapshot (unset: <store>-snapshots beside the store)"
    )


class DatabaseSettings(BaseModel):
    """Fleet mode (issue 25): docstore, cache, ledger and writer lock in PostgreSQL (pipeline/store/postgres.py)."""

    url: SecretStr | None = Field(
        None, description="postgresql://… puts docstore, ingest cache, ledger and locks in PostgreSQL (fleet mode); unset = SQLite files in the store (env PIPELINE_DATABASE__URL)"
    )
    namespace: str = Field("", description="This store's name in the database (several stores may share one); empty = qdrant.prefix")
    pool_size: int = Field(4, ge=1, description="Most connections one process opens to the database")
    lease_seconds: float = Field(120.0, gt=0.0, description="Seconds an ingest worker's claim on a document lasts without renewal; a killed worker's documents are taken over after it")


def config_file() -> Path:
    """The TOML file settings are read from: ``PIPELINE_CONFIG``, else ./pipeline.toml (one rule for
    ``Settings`` and ``pipeline config``, which shows the file by name)."""
    return Path(os.environ.get("PIPELINE_CONFIG") or "pipeline.toml")


def is_store(folder: Path) -> bool:
    """A folder that holds a store: its docstore, or embedded-engine collections (edge or local mode)."""
    try:
        return (folder / DOCSTORE_FILE).is_file() or any((folder / "edge").glob("*/collection.json")) or (folder / "qdrant" / "collection").is_dir()
    except OSError:
        return False


def enclosing_store(path: Path) -> Path | None:
    """The store folder ``path`` lies inside (not ``path`` itself), or None.

    ``--store clean/edge`` once wrote a new store into a store's engine folder and broke the outer one.
    """
    try:
        resolved = path.expanduser().resolve()
    except (OSError, RuntimeError):
        return None
    for ancestor in resolved.parents:
        if is_store(ancestor):
            return ancestor
    return None


class Settings(BaseSettings):
    """Everything configurable; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_", env_nested_delimiter="__", extra="ignore"
    )

    store: Path = Field(Path("storage"), description="Store folder: cache, docstore, embedded Qdrant (env PIPELINE_STORE)")
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    openai_api_key: SecretStr | None = Field(None, description="OpenAI key (env OPENAI_API_KEY)")

    @field_validator("store", mode="before")
    @classmethod
    def _store_named(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("the store path is empty: name a folder, e.g. --store storage (an empty one would write into the current folder)")
        return value

    @field_validator("store", mode="after")
    @classmethod
    def _store_not_nested(cls, value: Path) -> Path:
        if outer := enclosing_store(value):
            raise ValueError(f"{value} is inside the store at {outer}: a store inside another breaks both; choose a folder outside it")
        return value

    @model_validator(mode="after")
    def _established_env(self) -> "Settings":
        # Well-known variable names are honoured without the PIPELINE_ prefix.
        if self.qdrant.url is None and os.environ.get("QDRANT_URL"):
            self.qdrant.url = os.environ["QDRANT_URL"]
        if self.qdrant.api_key is None and os.environ.get("QDRANT_API_KEY"):
            self.qdrant.api_key = SecretStr(os.environ["QDRANT_API_KEY"])
        if self.openai_api_key is None and os.environ.get("OPENAI_API_KEY"):
            self.openai_api_key = SecretStr(os.environ["OPENAI_API_KEY"])
        if self.service.api_token is None and os.environ.get("PIPELINE_API_TOKEN"):
            self.service.api_token = SecretStr(os.environ["PIPELINE_API_TOKEN"])
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        named = os.environ.get("PIPELINE_CONFIG")
        toml_path = config_file()
        if named and not toml_path.is_file():  # a named file that is not there is a mistake, not "no config"
            why = "is not a file" if toml_path.exists() else "does not exist"
            raise ValueError(f"PIPELINE_CONFIG names {named}, which {why}: fix the path, or unset PIPELINE_CONFIG")
        from pipeline.settings_check import check_sources

        check_sources(settings_cls, toml_path)  # an unknown PIPELINE_* variable or TOML key is an error, never ignored
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))

    @property
    def qdrant_path(self) -> Path:
        """qdrant-client local mode's folder (``qdrant.backend=local``, and stores written before edge)."""
        return self.store / "qdrant"

    @property
    def docstore_path(self) -> Path:
        """Parents, ledger, failures and page offsets (one SQLite file, LlamaIndex's KV format)."""
        return self.store / DOCSTORE_FILE

    @property
    def cache_path(self) -> Path:
        """The persistent ingest cache (LlamaIndex ``IngestionCache`` rows)."""
        return self.store / CACHE_FILE

    @property
    def edge_path(self) -> Path:
        """The embedded engine's folder: one qdrant-edge shard per collection."""
        return self.store / "edge"

    def with_overrides(self, **values: Any) -> "Settings":
        """A copy with top-level fields replaced (used by the CLI's --store)."""
        return self.model_copy(update=values)
