"""Micro-batching of query embeddings: concurrent service requests share one ONNX call.

Why: each ``/retrieve`` embeds one short query, and for a query of ~15 word pieces most of an ONNX
call is fixed cost (tokenizer, input tensors, session dispatch); one call for 16 queries costs little
more than one for a single query. ``QueryBatcher`` collects what concurrent threads submit within a
short window and runs it as one batch; ``BatchedQueryEmbedding`` puts it behind LlamaIndex's
``BaseEmbedding``, so the retrievers call ``get_query_embedding`` as before and need no change.

Why in ``providers/`` and not ``service/``: it depends on the embedder only (no FastAPI). Only the
service uses it: the CLI and eval embed one query at a time, where a window would only add latency.

Batched vectors must equal unbatched ones (``allclose`` 1e-5), so only an embedder that declares
``batch_invariant`` is batched (``batched_query_embedder`` returns any other unchanged). The int8
all-MiniLM-L6-v2 model is (a padded batch of 16 differs by < 1e-7); the int8 bge-small is not: its
activations are quantized with one scale per tensor, so the other queries of a batch (padding
included, and even same-length ones) move a vector by up to 0.02 (cosine 0.995).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from pipeline.errors import ConfigError, ShuttingDown
from pipeline.providers.embeddings import EmbedUsage, OnnxEmbedding

logger = logging.getLogger(__name__)

MAX_WINDOW_MS = 50.0  # a window is meant to be a few ms; more is a typo (seconds?) and would stall every query
CLOSE_TIMEOUT = 5.0  # seconds close() waits for the batch in flight (one ONNX call: milliseconds)

BatchFn = Callable[[list[str]], Sequence[Sequence[float]]]


@dataclass
class _Pending:
    text: str
    arrived: float
    result: Future[list[float]] = field(default_factory=Future)


class QueryBatcher:
    """One worker thread that runs the queries submitted by many threads in batches.

    The worker waits for the first query, then collects more until ``window_ms`` have passed since
    that query arrived or ``max_batch`` are waiting, and runs them as one call of ``embed_batch``
    (identical texts once). Under load the window costs nothing: queries that arrived while the
    previous batch ran are past their window already and go at once. An exception from
    ``embed_batch`` is raised in every caller of that batch. ``close()`` lets the batch in flight
    finish and fails queries still waiting with ``ShuttingDown``; the thread starts on first use.

    Example:
        batcher = QueryBatcher(embedder.embed_queries, window_ms=2, max_batch=16)
        vec = batcher.embed("How did AlexNet use GPUs?")  # from any thread; blocks until its batch ran
        batcher.close()
    """

    def __init__(self, embed_batch: BatchFn, window_ms: float, max_batch: int, name: str = "query-batcher") -> None:
        if not 0 <= window_ms <= MAX_WINDOW_MS:
            raise ConfigError(f"embed batch window must be between 0 and {MAX_WINDOW_MS:g} ms, got {window_ms:g}")
        if max_batch < 1:
            raise ConfigError(f"embed batch size must be at least 1, got {max_batch}")
        self.embed_batch = embed_batch
        self.window = window_ms / 1000
        self.max_batch = max_batch
        self.name = name
        self.batches = 0  # embed_batch calls made
        self.queries = 0  # queries answered through them
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None

    def embed(self, text: str) -> list[float]:
        """The vector of ``text``, computed in a batch with whatever other threads submit meanwhile.

        Raises:
            ShuttingDown: the batcher was closed before the query ran.
            Exception: whatever ``embed_batch`` raised for this query's batch.
        """
        pending = _Pending(text, time.monotonic())
        with self._cond:
            if self._closed:
                raise ShuttingDown("query embedding stopped: the service is shutting down")
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._worker.start()
            self._queue.append(pending)
            self._cond.notify()
        return pending.result.result()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop the worker after the batch in flight; queries still queued fail with ``ShuttingDown``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
            if worker.is_alive():
                logger.warning("%s: the batch in flight did not finish within %.1f s; abandoned", self.name, timeout)
        self._fail_queued()  # also those queued when no worker ever ran, or one that was abandoned

    def _fail_queued(self) -> None:
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        for pending in left:
            pending.result.set_exception(ShuttingDown("query embedding stopped: the service is shutting down"))

    def _next_batch(self) -> list[_Pending] | None:
        """The next batch once its window has closed or it is full; None when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closed)
            if self._closed:
                return None
            deadline = self._queue[0].arrived + self.window
            while len(self._queue) < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._closed:
                return None
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            texts = list(dict.fromkeys(p.text for p in batch))  # the same question twice is embedded once
            try:
                vectors = self.embed_batch(texts)
                if len(vectors) != len(texts):
                    raise RuntimeError(f"{self.name}: {len(texts)} queries embedded into {len(vectors)} vectors")
            except BaseException as exc:  # every caller of the batch sees the failure, the worker goes on
                for pending in batch:
                    pending.result.set_exception(exc)
                continue
            by_text = {t: list(v) for t, v in zip(texts, vectors)}
            self.batches += 1
            self.queries += len(batch)
            for pending in batch:
                pending.result.set_result(by_text[pending.text])
        self._fail_queued()


class BatchedQueryEmbedding(BaseEmbedding):
    """An ``OnnxEmbedding`` whose query embeddings go through a ``QueryBatcher``; texts go straight through.

    It shares the wrapped model's ``model_name``, ``usage`` and session, so the store's model check
    and the query stats read the same as without it. ``close()`` stops the batcher.

    Example:
        embedder = BatchedQueryEmbedding(OnnxMiniLMEmbedding(), window_ms=2, max_batch=16)
        engine = Engine(settings, embedder=embedder)  # concurrent retrieves share ONNX calls
        embedder.close()
    """

    _inner: OnnxEmbedding = PrivateAttr()
    _batcher: QueryBatcher = PrivateAttr()

    def __init__(self, inner: OnnxEmbedding, window_ms: float, max_batch: int) -> None:
        super().__init__(model_name=inner.model_name, embed_batch_size=inner.embed_batch_size)
        self._inner = inner
        self._batcher = QueryBatcher(inner.embed_queries, window_ms, max_batch, name=f"query-batcher:{inner.model_name}")

    @classmethod
    def class_name(cls) -> str:
        return "BatchedQueryEmbedding"

    @property
    def inner(self) -> OnnxEmbedding:
        return self._inner

    @property
    def batcher(self) -> QueryBatcher:
        return self._batcher

    @property
    def usage(self) -> EmbedUsage:
        return self._inner.usage

    def load(self) -> None:
        self._inner.load()

    def close(self) -> None:
        self._batcher.close()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._batcher.embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        # Waiting for the window must not block the event loop.
        return await asyncio.to_thread(self._batcher.embed, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._inner.get_text_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._inner.get_text_embedding_batch(texts)


def batched_query_embedder(embedder: BaseEmbedding, window_ms: float, max_batch: int) -> BaseEmbedding:
    """``embedder`` wrapped in ``BatchedQueryEmbedding`` when batching is on and exact for it, else itself.

    Batching is off for ``window_ms == 0``, for embedders other than ``OnnxEmbedding`` (an HTTP
    embedder has its own batching), and for a model whose vectors depend on the rest of the batch
    (``batch_invariant`` False: bge-small int8); the last is logged, since the setting asked for it.
    """
    if window_ms == 0 or not isinstance(embedder, OnnxEmbedding):
        return embedder
    if not embedder.batch_invariant:
        logger.info(
            "query batching off for %s: its int8 activations are scaled per batch, so a batched vector would "
            "differ from the same query embedded alone",
            embedder.model_name,
        )
        return embedder
    return BatchedQueryEmbedding(embedder, window_ms, max_batch)
