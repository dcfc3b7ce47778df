"""A service without a store: ``create_app`` on a real ``ServiceState`` whose engine is a fake that
takes a set time, so routes, slots, middleware and jobs are tested in milliseconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from pipeline.config import Settings
from pipeline.models import Answer, Mode
from pipeline.service.app import create_app
from pipeline.service.deps import ServiceState


class FakeEmbedder:
    model_name = "fake"


class FakeEngine:
    """Retrieval and extracts take ``seconds`` (in the worker thread, like the real engine); an LLM
    stream yields one token, then waits for ``unblock`` (a long prompt, a slow model) before the rest."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.unblock = threading.Event()
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def _work(self, query: str, how: str) -> Answer:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        return Answer(query=query, mode=Mode.ALL, top_k=3, answer=None if how == "none" else "An extract.", answer_mode=how)

    def retrieve(self, query: str, *args: Any, **kwargs: Any) -> Answer:
        return self._work(query, "none")

    def query(self, query: str, mode: Any = None, top_k: Any = None, filters: Any = None, answer: str | None = None, rerank: Any = None, min_confidence: Any = None) -> Answer:
        return self._work(query, answer or "extractive")

    def stream_query(self, query: str, mode: Any = None, top_k: Any = None, filters: Any = None, answer: str | None = None, rerank: Any = None, min_confidence: Any = None) -> Iterator[Any]:
        if answer != "llm":
            yield self._work(query, answer or "extractive")
            return
        yield "The"
        self.unblock.wait(30)
        yield " answer."
        yield Answer(query=query, mode=Mode.ALL, top_k=3, answer="The answer.", answer_mode="llm")

    def close(self) -> None:
        self.unblock.set()


def fake_service(tmp_path: Path, engine: FakeEngine | None = None, **service: Any) -> tuple[FastAPI, ServiceState, FakeEngine]:
    """(app, state, engine): ``llm.provider=none`` but an LLM object present, so ``answer: llm`` generates."""
    settings = Settings(store=tmp_path / "store", llm={"provider": "none"}, service=service)
    state = ServiceState(settings, embedder=FakeEmbedder(), llm=object())  # type: ignore[arg-type]
    engine = engine or FakeEngine()
    state._engine = engine  # type: ignore[assignment]
    return create_app(settings, state), state, engine
