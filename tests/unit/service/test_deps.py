import threading
import time
from typing import Any

import anyio
import pytest
from fastapi import HTTPException

from pipeline.service.deps import UPLOAD_SLICE, GenerationSlots, SerializedClient
from pipeline.service.metrics import ServiceMetrics


class FakeClient:
    """Records calls and whether two of them ever overlapped."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.active = 0
        self.overlapped = False
        self.url = "embedded"

    def _enter(self) -> None:
        self.active += 1
        self.overlapped |= self.active > 1
        time.sleep(0.002)
        self.active -= 1

    def upload_points(self, collection_name: str, points: Any, **kwargs: Any) -> None:
        self._enter()
        self.calls.append((collection_name, len(list(points))))

    def query_points(self, collection_name: str, **kwargs: Any) -> str:
        self._enter()
        self.calls.append((collection_name, 0))
        return "hits"


class TestSerializedClient:
    def test_uploads_are_sliced_and_calls_never_overlap(self) -> None:
        fake = FakeClient()
        client = SerializedClient(fake)  # type: ignore[arg-type]
        threads = [threading.Thread(target=client.upload_points, args=("c", list(range(100))))]
        threads += [threading.Thread(target=client.query_points, args=("c",)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        uploads = [n for name, n in fake.calls if n]
        assert uploads == [UPLOAD_SLICE, UPLOAD_SLICE, UPLOAD_SLICE, 100 - 3 * UPLOAD_SLICE]
        assert not fake.overlapped
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
