"""Generation slots: how many LLM answers the service writes at once.

Only generation is limited this way: an LLM answer holds a CPU (llama.cpp) or a paid API call for
seconds, while retrieval and extractive answers are short and run in ``ServiceState.retrieval_limiter``'s
threads, as concurrently as ``/retrieve``. Its own module to keep ``deps.py`` small.
"""

from __future__ import annotations

import anyio
from fastapi import HTTPException

from pipeline.service.metrics import ServiceMetrics


class GenerationSlots:
    """At most ``size`` LLM answers at once; a request that finds none free within ``wait`` seconds gets
    429 with ``Retry-After``. Used from the event loop only (acquire and release)."""

    def __init__(self, size: int, wait: float, retry_after: int, metrics: ServiceMetrics) -> None:
        self.size = size
        self.wait = wait
        self.retry_after = retry_after
        self.metrics = metrics
        self._semaphore = anyio.Semaphore(size)

    async def acquire(self) -> "GenerationSlot":
        acquired = False
        if self.wait > 0:
            with anyio.move_on_after(self.wait):
                await self._semaphore.acquire()
                acquired = True
        else:
            try:
                self._semaphore.acquire_nowait()
                acquired = True
            except anyio.WouldBlock:
                pass
        if not acquired:
            self.metrics.generations_rejected.inc()
            raise HTTPException(
                status_code=429,
                detail=f"all {self.size} generation slot(s) are busy: retry after {self.retry_after} s, or use /retrieve",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.metrics.generations_in_flight.inc()
        return GenerationSlot(self)

    def _release(self) -> None:
        self.metrics.generations_in_flight.dec()
        self._semaphore.release()


class GenerationSlot:
    """One held slot; ``release()`` may be called more than once (stream end and cleanup both call it)."""

    def __init__(self, slots: GenerationSlots) -> None:
        self._slots = slots
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release()
