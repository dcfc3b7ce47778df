"""Issue 22, point 5 (service side): when the engine withdraws a streamed LLM answer, the stream says so
(`replaced`) before the final `sources` event, and the final event is what the client must show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from pipeline.models import Answer, Mode
from pipeline.retrieve.grounding import Replaced
from tests.unit.service.fakes import FakeEngine, fake_service

EXTRACT = "The resulting corpus consists of 81.1M papers. [1, p. 4]"
REASON = 'the number 28.9 in "S2ORC contains 28.9M papers." is not in the cited sources'


class ReplacingEngine(FakeEngine):
    """Streams an LLM text, then (as Engine.stream_query does for an unsupported answer) replaces it."""

    def stream_query(self, query: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        yield "S2ORC contains"
        yield " 28.9M papers."
        yield Replaced(reason=REASON, answer=EXTRACT)
        yield Answer(query=query, mode=Mode.ALL, top_k=3, answer=EXTRACT, answer_mode="extractive", replaced=REASON, confidence=0.97)


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_a_replaced_answer_is_announced_and_the_final_event_is_what_was_shown(tmp_path: Path) -> None:
    app, _, _ = fake_service(tmp_path, ReplacingEngine())
    client = TestClient(app)  # no lifespan: the fake engine is already in place (as test_capacity.py does)
    r = client.post("/query", json={"query": "How many papers are in S2ORC?", "answer": "llm", "stream": True})
    assert r.status_code == 200
    got = events(r.text)
    assert [name for name, _ in got] == ["token", "token", "replaced", "sources"]
    replaced, final = got[2][1], got[3][1]
    assert replaced == {"reason": REASON, "answer": EXTRACT}
    assert final["answer"] == replaced["answer"] and final["answer_mode"] == "extractive" and final["replaced"] == REASON
