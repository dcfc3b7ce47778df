"""Request and response models of the HTTP API; validation here turns bad input into a 422, never a 500.

Request fields are strict (``StrictInt``, ``StrictBool``, ``StrictStr``): JSON ``"3"`` is not 3, ``true``
is not 1 and ``"yes"`` is not true, so a client bug is a 422 instead of a silent, different request.
Enums (``mode``) still take their string values. Ingest paths are checked as text (NUL, surrogates,
length) before anything touches the file system.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from pipeline.ingest.scan import MAX_PATH_BYTES, check_path_text
from pipeline.models import IngestReport, Mode
from pipeline.errors import InvalidQuery
from pipeline.retrieve.engine import MAX_QUERY_CHARS, MAX_TOP_K, check_top_k
MAX_INGEST_PATHS = 1000


class Filters(BaseModel):
    """Metadata filters; every field given must match (AND). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    doc: StrictStr | None = Field(None, min_length=1, max_length=MAX_PATH_BYTES, description="Only this document, by name (GET /documents); unknown: 422 naming the closest")
    doc_id: StrictStr | None = Field(None, min_length=1, max_length=MAX_PATH_BYTES, description="Only this document (its doc_id, or its name); unknown: 422 naming the closest")
    file_name: StrictStr | None = Field(None, min_length=1, max_length=255, description="Only documents with this file name")
    parent_id: StrictStr | None = Field(None, min_length=1, max_length=64, description="Only this parent")

    def as_dict(self) -> dict[str, str] | None:
        """The engine's filter mapping, or None when no filter is set."""
        return self.model_dump(exclude_none=True) or None


class RetrieveRequest(BaseModel):
    """What ``query --retrieve-only`` takes: a question, a mode, k and optional filters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "What is S2ORC?", "mode": "all", "top_k": 3},
                {"query": "How many papers are in the corpus?", "mode": "chunk", "top_k": 5, "filters": {"doc_id": "/data/papers/s2orc.pdf"}},
            ]
        },
    )

    query: StrictStr = Field(min_length=1, max_length=MAX_QUERY_CHARS, description=f"The question (1 to {MAX_QUERY_CHARS} characters)")
    mode: Mode = Field(Mode.ALL, description="Which references to match: base, chunk, metadata or all")
    top_k: StrictInt | None = Field(
        None,
        json_schema_extra={"minimum": 1, "maximum": MAX_TOP_K},  # checked by check_top_k: the CLI's and engine's message
        description=f"Distinct parents to return (1 to {MAX_TOP_K}; default retrieval.top_k)",
    )
    filters: Filters | None = Field(None, description="Metadata filters (doc_id, file_name, parent_id)")
    rerank: StrictBool | None = Field(
        None, description="Re-score the top candidates with the cross-encoder (default retrieval.rerank, off)"
    )
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0, strict=True, description="Answerable only at this confidence or above (default retrieval.min_confidence); 0 always answers"
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank: send the question text")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("query is not valid Unicode (lone surrogate)") from None
        return value

    @field_validator("top_k")
    @classmethod
    def _top_k_in_range(cls, value: int | None) -> int | None:
        if value is None:
            return None
        try:
            return check_top_k(value)
        except InvalidQuery as exc:
            raise ValueError(str(exc)) from None

    def filter_dict(self) -> dict[str, str] | None:
        return self.filters.as_dict() if self.filters else None


class QueryRequest(RetrieveRequest):
    """A retrieve request plus ``stream``: answer as server-sent events, ending with the sources."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "What is S2ORC?", "mode": "all", "top_k": 3},
                {"query": "What is S2ORC?", "stream": True},
            ]
        },
    )

    stream: StrictBool = Field(False, description="Stream the answer as text/event-stream: `token` events, then one `sources` event")
    answer: Literal["auto", "extractive", "llm", "none"] | None = Field(
        None, description="How to answer: extractive (cited sentences of the sources), llm, none, or auto; default answer.mode"
    )


class ErrorBody(BaseModel):
    """Every error response: what kind, a message naming the cause, and the request id to find it in the logs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": "InvalidRequest", "detail": "body.top_k: Input should be less than or equal to 50", "request_id": "5f2c0d3b9a1e4c7f"}]
        }
    )

    error: str
    detail: str
    request_id: str = ""
    errors: list[dict[str, Any]] | None = Field(None, description="Validation errors: location, message, type")


# What any token-protected route may answer besides its own statuses (the OpenAPI schema lists them:
# schemathesis checks every status is documented).
API_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "The body cannot be parsed (not UTF-8 / not JSON)"},
    401: {"model": ErrorBody, "description": "Missing or invalid bearer token (when PIPELINE_API_TOKEN is set)"},
    413: {"model": ErrorBody, "description": "Body larger than service.max_body_bytes"},
    422: {"model": ErrorBody, "description": "Invalid input: the message names each field and rule"},
}


class IngestRequest(BaseModel):
    """Files and folders on the server to ingest, as ``python -m pipeline ingest PATH...`` would."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"paths": ["/data/papers"], "prune": False}]},
    )

    paths: list[StrictStr] = Field(
        min_length=1,
        max_length=MAX_INGEST_PATHS,
        description=f"Absolute paths on the server, under service.ingest_roots: PDF, .txt, .md files or folders (each at most {MAX_PATH_BYTES} bytes)",
    )
    prune: StrictBool = Field(False, description="Also remove documents under the given folders whose files are gone")

    @field_validator("paths")
    @classmethod
    def _valid_paths(cls, paths: list[str]) -> list[str]:
        problems = []
        for i, text in enumerate(paths):
            try:
                check_path_text(text)
            except ValueError as exc:
                problems.append(f"paths[{i}]: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return paths

    def path_list(self) -> list[Path]:
        """The paths, normalised (``/a/./b/`` → ``/a/b``); already checked by the validator."""
        return [check_path_text(p) for p in self.paths]


class JobState(str, Enum):
    """Where an ingest job is.

    QUEUED: waiting for the job before it. RUNNING: ingesting (``cancel_requested`` once a DELETE
    asked it to stop). SUCCEEDED: every file done (some may have failed or been skipped: see
    ``report.files``). FAILED: the run stopped (``error`` says why). CANCELLED: cancelled, or the
    service shut down first (``error`` says which, and whether the job was abandoned); documents
    finished before that are kept.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobProgress(BaseModel):
    files_total: int = 0
    files_done: int = 0
    current: str | None = None


class IngestJob(BaseModel):
    """An ingest run started by ``POST /ingest``; poll ``GET /jobs/{id}`` until ``state`` is final."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b6f3d2e8c4a4f19a3f1c2d4e5b6a7c8",
                    "state": "running",
                    "paths": ["/data/papers"],
                    "prune": False,
                    "created": "2025-01-01T12:00:00Z",
                    "progress": {"files_total": 41, "files_done": 3, "current": "/data/papers/bert.pdf"},
                }
            ]
        }
    )

    id: str
    state: JobState = JobState.QUEUED
    paths: list[str]
    prune: bool = False
    created: str
    started: str | None = None
    finished: str | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    cancel_requested: bool = False
    report: IngestReport | None = None
    error: str | None = None


class Readiness(BaseModel):
    """``GET /readyz``: ready only when every check is ok; ``reasons`` lists what is not."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": False,
                    "checks": {"qdrant": "ok", "docstore": "ok", "collections": "docs_children: ModelMismatch ...", "embedder": "ok", "llm": "loading"},
                    "reasons": ["collection 'docs_children' holds text-embedding-3-small/1536, configured all-MiniLM-L6-v2-int8/384: ..."],
                }
            ]
        }
    )

    ready: bool
    checks: dict[str, str]
    reasons: list[str] = Field(default_factory=list)


ANSWER_EXAMPLE: dict[str, Any] = {
    "query": "What is S2ORC?",
    "mode": "all",
    "top_k": 1,
    "answer": None,
    "sources": [
        {
            "parent_id": "3b0f6f3e-8c2a-5d4e-9f1a-2b3c4d5e6f70",
            "readable_id": "acl2020.acl-main.447.pdf#parent-0",
            "doc_id": "/data/papers/acl2020.acl-main.447.pdf",
            "pages": [1, 2],
            "score": 0.71,
            "text": "S2ORC: The Semantic Scholar Open Research Corpus ...",
            "matched": [{"kind": "chunk-128", "node_id": "9c1d...", "score": 0.71}],
        }
    ],
    "stats": {"embedded_texts": 0, "embedded_queries": 1, "references_fetched": 40, "retrieve_ms": 21.5, "answer_ms": 0.0},
}
