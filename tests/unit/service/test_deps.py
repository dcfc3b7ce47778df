import threading
import time
from typing import Any

import anyio
import pytest
from fastapi import HTTPException

from pipeline.service.deps import GenerationSlots
from pipeline.store.local_mode import UPLOAD_SLICE, SerializedClient
from pipeline.service.metrics import ServiceMetrics


class FakeClient:
    """Records calls, and whether a write ever overlapped another call or reads overlapped each other."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.readers = 0
        self.writers = 0
        self.write_overlapped = False
        self.reads_overlapped = False
        self.url = "embedded"
        self._lock = threading.Lock()

    def _run(self, write: bool) -> None:
        with self._lock:
            if write:
                self.writers += 1
                self.write_overlapped |= self.readers > 0 or self.writers > 1
            else:
                self.readers += 1
                self.write_overlapped |= self.writers > 0
                self.reads_overlapped |= self.readers > 1
        time.sleep(0.01)
        with self._lock:
            if write:
                self.writers -= 1
            else:
                self.readers -= 1

    def upload_points(self, collection_name: str, points: Any, **kwargs: Any) -> None:
        self._run(write=True)
        self.calls.append((collection_name, len(list(points))))

    def query_points(self, collection_name: str, **kwargs: Any) -> str:
        self._run(write=False)
        return "hits"


class TestSerializedClient:
    def test_writes_are_exclusive_sliced_and_reads_share(self) -> None:
        fake = FakeClient()
        client = SerializedClient(fake)  # type: ignore[arg-type]
        threads = [threading.Thread(target=client.upload_points, args=("c", list(range(100))))]
        threads += [threading.Thread(target=client.query_points, args=("c",)) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [n for _, n in fake.calls] == [UPLOAD_SLICE, UPLOAD_SLICE, UPLOAD_SLICE, 100 - 3 * UPLOAD_SLICE]
        assert not fake.write_overlapped
        assert fake.reads_overlapped  # searches run side by side
        assert client.query_points("c") == "hits" and client.url == "embedded"


class TestGenerationSlots:
    def test_full_slots_give_429_with_retry_after_until_released(self) -> None:
        metrics = ServiceMetrics()

        async def scenario() -> None:
            slots = GenerationSlots(size=1, wait=0.0, retry_after=9, metrics=metrics)
            held = await slots.acquire()
            with pytest.raises(HTTPException) as busy:
                await slots.acquire()
            assert busy.value.status_code == 429 and busy.value.headers == {"Retry-After": "9"}
            held.release()
            held.release()  # idempotent: the semaphore is not released twice
            again = await slots.acquire()
            with pytest.raises(HTTPException):
                await slots.acquire()
            again.release()

        anyio.run(scenario)
        assert metrics.generations_rejected._value.get() == 2
        assert metrics.generations_in_flight._value.get() == 0

    def test_waiting_request_gets_the_slot_when_it_frees(self) -> None:
        async def scenario() -> float:
            slots = GenerationSlots(size=1, wait=2.0, retry_after=1, metrics=ServiceMetrics())
            held = await slots.acquire()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_release_later, held)
                started = time.perf_counter()
                (await slots.acquire()).release()
                return time.perf_counter() - started

        waited = anyio.run(scenario)
        assert 0.05 <= waited < 1.5


async def _release_later(slot: Any) -> None:
    await anyio.sleep(0.1)
    slot.release()
