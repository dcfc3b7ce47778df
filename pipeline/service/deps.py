"""What one service process holds (store client, engine, models, limits, jobs) and the FastAPI dependencies
that hand it to the routes; tests swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import LLM
from qdrant_client import QdrantClient

from pipeline.config import Settings
from pipeline.errors import PipelineError, StoreError, StoreLocked
from pipeline.ingest.run import Ingestor, ProgressFn
from pipeline.ingest.scan import ScanLimits
from pipeline.models import IngestReport
from pipeline.providers.batching import BatchedQueryEmbedding, batched_query_embedder
from pipeline.providers.embeddings import build_embedder, embed_dim
from pipeline.retrieve.engine import Engine
from pipeline.service.jobs import JobRunner
from pipeline.service.llm_state import LLMState, ServiceLLM
from pipeline.service.metrics import ServiceMetrics
from pipeline.service.redact import redact_paths
from pipeline.service.schemas import IngestJob
from pipeline.service.slots import GenerationSlot, GenerationSlots  # noqa: F401  (re-exported: routes, tests)
from pipeline.store import qdrant as qstore
from pipeline.store.layout import Collection
from pipeline.store.state import fleet
from pipeline.service.database import database_check

logger = logging.getLogger(__name__)

class ServiceState:
    """One per app: the store client (the only one in embedded mode), the engine, models, limits, jobs.

    ``open()`` loads the embedder, opens the store and starts the LLM warm-up; a store with nothing
    ingested yet is not an error: the engine is built on the first request after data arrives.

    Example:
        state = ServiceState(settings)
        state.open()
        state.engine().retrieve("What is S2ORC?")
        state.close()
    """

    def __init__(self, settings: Settings, embedder: BaseEmbedding | None = None, llm: LLM | None = None) -> None:
        cfg = settings.service
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.embedder = embedder or build_embedder(settings)
        self._own_embedder = embedder is None
        self.llm = ServiceLLM(settings, llm)
        self._client: QdrantClient | None = None
        self._engine: Engine | None = None
        self._lock = threading.RLock()
        self._ingest_embedder: BaseEmbedding | None = None
        self._query_embedder: BaseEmbedding | None = None
        self._embedder_loaded = False
        self.retrieval_limiter = anyio.CapacityLimiter(cfg.retrieval_threads)
        self.generations = GenerationSlots(cfg.max_concurrent_generations, cfg.generation_wait, cfg.retry_after, self.metrics)
        self.jobs = JobRunner(
            self._ingest, on_finish=self._job_finished, stop_timeout=cfg.ingest_stop_timeout, redact=lambda text: redact_paths(text, settings)
        )
        self.startup_error: str | None = None  # why ``open()`` failed, in one line, when it is not a bug

    # --- lifecycle
    def open(self) -> None:
        """Load the embedder, open the store, build the engine if there is data, warm up the LLM.

        Raises:
            StoreLocked: another process holds the embedded store (fatal: the service must own it).
        """
        try:
            client = self.client()
            if self._own_embedder:  # a store opens with the model it was built with unless embed.model names one
                self.embedder = build_embedder(self.settings, qstore.stored_model(client, self.settings))
        except StoreError:
            client = None
        self.embedder.load()
        self._embedder_loaded = True
        self.llm.build()
        try:
            self.client()
            self.engine()
        except StoreLocked as exc:
            from pipeline.store.holder import describe_holders

            holders = describe_holders(self.settings.store)
            if holders:  # say which process, instead of a guess
                raise exc.held_by(holders) from exc
            raise
        except StoreError as exc:  # nothing ingested yet, Qdrant down, model mismatch: /readyz says which
            logger.warning("store not ready: %s", exc)
        self.llm.warm_up()

    def close(self) -> None:
        """Stop ingest jobs (a running one at its next file or parent; abandoned after
        ``service.ingest_stop_timeout`` seconds), stop query batching (queries still waiting for their
        embedding get ``ShuttingDown``), then close the engine and client."""
        self.jobs.shutdown()
        with self._lock:
            if isinstance(self._query_embedder, BatchedQueryEmbedding):
                self._query_embedder.close()
            self._query_embedder = None
            if self._engine is not None:
                self._engine.close()  # closes the shared client too
            elif self._client is not None:
                self._client.close()
            self._engine = None
            self._client = None

    # --- store and engine
    def client(self) -> QdrantClient:
        """The process's Qdrant client, opened on first use; each backend owns its locking (local mode's
        is ``store/local_mode.py``; tests/e2e/test_edge_service.py: ingest while 8 threads query)."""
        with self._lock:
            if self._client is None:
                self._client = qstore.open_client(self.settings)
            return self._client

    @property
    def current_engine(self) -> Engine | None:
        return self._engine

    def engine(self) -> Engine:
        """The engine, built on first use once the store has data.

        Raises:
            StoreUnavailable: nothing ingested yet, or Qdrant unreachable.
            ModelMismatch: the store was built with another embedding model or dimension.
        """
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                self._engine = Engine(self.settings, embedder=self.query_embedder(), llm=self.llm.model, load_llm=False, client=self.client())
                logger.info("store opened: %s", ", ".join(self._engine.store.names.values()))
            return self._engine

    def query_embedder(self) -> BaseEmbedding:
        """The engine's embedder: ``self.embedder`` with concurrent queries batched into one ONNX call
        (``service.embed_batch_window_ms``; see ``providers/batching.py``). Only the service batches: it
        is where queries arrive at once; the CLI and eval embed one at a time."""
        with self._lock:
            if self._query_embedder is None:
                cfg = self.settings.service
                self._query_embedder = batched_query_embedder(self.embedder, cfg.embed_batch_window_ms, cfg.embed_batch_max)
            return self._query_embedder

    # --- LLM (pipeline/service/llm_state.py)
    @property
    def llm_status(self) -> str:
        return self.llm.status

    def require_llm(self) -> LLM:
        return self.llm.require()

    # --- readiness
    def readiness(self) -> tuple[bool, dict[str, str], list[str]]:
        """(ready, checks, reasons): the store answers, the collections hold this embedding model, models loaded."""
        checks: dict[str, str] = {}
        reasons: list[str] = []

        def fail(check: str, reason: str) -> None:
            checks[check] = reason
            reasons.append(reason)

        try:
            client = self.client()
            client.get_collections()  # one call, no retries: a probe must answer fast
            checks["qdrant"] = "ok"
        except Exception as exc:
            fail("qdrant", f"Qdrant unreachable: {type(exc).__name__}: {exc}")
            client = None
        if fleet(self.settings):  # fleet mode: the docstore is the database's rows (store/state.py)
            database_check(self.settings, checks, fail)
        else:
            docstore = self.settings.docstore_path
            if docstore.exists():
                checks["docstore"] = "ok"
            else:
                fail("docstore", f"no docstore at {docstore}: nothing ingested yet (POST /ingest or `python -m pipeline ingest`)")
        if client is not None:
            model, dim = self.embedder.model_name, embed_dim(self.embedder)
            problems = []
            names = qstore.names(self.settings)
            for coll, name in names.items():
                try:
                    if qstore.check_model(client, name, model, dim):
                        continue
                    if coll is Collection.PARENTS and client.collection_exists(names[Collection.CHILDREN]):
                        problems.append(
                            f"collection '{name}' missing: the store was written by an older version; "
                            "`python -m pipeline check --repair` or POST /ingest migrates it"
                        )
                    else:
                        problems.append(f"collection '{name}' missing: nothing ingested yet")
                except PipelineError as exc:
                    problems.append(str(exc))
            checks["collections"] = problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "") if problems else "ok"
            reasons.extend(problems)
        if self._embedder_loaded:
            checks["embedder"] = "ok"
        else:
            fail("embedder", "embedding model not loaded")
        if self.llm.state in (LLMState.OK, LLMState.NOT_CONFIGURED):
            checks["llm"] = self.llm.status
        else:
            fail("llm", f"LLM {self.llm.status}")
        if not reasons:
            try:
                self.engine()
            except PipelineError as exc:
                fail("engine", f"{type(exc).__name__}: {exc}")
        return not reasons, checks, reasons

    # --- ingest jobs
    def ingest_limits(self) -> ScanLimits:
        """What an ingest job may read: files under the ingest roots (after resolving symlinks), within the caps."""
        cfg = self.settings.service
        return ScanLimits(
            roots=tuple(Path(os.path.realpath(r)) for r in cfg.ingest_roots),
            max_files=cfg.ingest_max_files,
            max_file_bytes=cfg.ingest_max_file_bytes,
            file_timeout=cfg.ingest_file_timeout,
            allow_hardlinks=cfg.ingest_allow_hardlinks,
        )

    def _ingest(self, paths: Sequence[Path], prune: bool, progress: ProgressFn) -> IngestReport:
        """Run one ingest on the service's open client, with an embedder of its own (so query stats
        keep counting 0 corpus texts) and the service's LLM when enrichment is on."""
        with self._lock:
            if self._ingest_embedder is None:
                self._ingest_embedder = build_embedder(self.settings, self.embedder.model_name)
        llm = self.llm.model if self.settings.ingest.enrich else None
        ingestor = Ingestor(
            self.settings,
            embedder=self._ingest_embedder,
            llm=llm,
            progress=progress,
            lock_timeout=self.settings.service.ingest_lock_timeout,
            client=self.client(),
            limits=self.ingest_limits(),
        )
        report = ingestor.run(paths, prune=prune)
        skipped = [f for f in report.files if f.reason.startswith("skipped:")]
        for f in skipped[:20]:  # the first few are enough to see what happened; the report has them all
            logger.warning("ingest skipped %s: %s", f.path, f.reason)
        if len(skipped) > 20:
            logger.warning("ingest skipped %d more files (see the job report)", len(skipped) - 20)
        return report.model_copy(update={"store": self.settings.store.name})  # not the server's folder

    def _job_finished(self, job: IngestJob) -> None:
        self.metrics.ingest_jobs.labels(state=job.state.value).inc()


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


def get_settings(state: Annotated[ServiceState, Depends(get_state)]) -> Settings:
    return state.settings


async def get_engine(state: Annotated[ServiceState, Depends(get_state)]) -> Engine:
    """The engine; built off the event loop the first time (it opens collections).

    Routes await it after their body is validated rather than declaring it as a ``Depends``: FastAPI
    solves dependencies before the body, which would turn bad input on an empty store into a 503.
    """
    engine = state.current_engine
    if engine is not None:
        return engine
    return await anyio.to_thread.run_sync(state.engine)


bearer = HTTPBearer(auto_error=False, description="The service token (PIPELINE_API_TOKEN), when one is set")


def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Refuse the request with 401 unless auth is off or it carries ``Authorization: Bearer <token>``."""
    token = settings.service.api_token
    if token is None:
        return
    given = credentials.credentials if credentials else ""
    if not given or not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid bearer token: send 'Authorization: Bearer <PIPELINE_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
