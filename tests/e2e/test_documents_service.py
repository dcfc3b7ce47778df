"""The documents routes of the service (issue 23) on a real store: list, show, remove by name (token,
audit line, 404), and names accepted by /retrieve filters (422 naming the closest, never an empty result)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from pipeline.logs import JsonFormatter
from pipeline.service.app import create_app
from tests.conftest import SAMPLE_PDF
from tests.e2e.conftest import copy_store
from tests.e2e.test_service import NO_LLM_SETTINGS, TOKEN, Served, serve_in_thread

pytestmark = [pytest.mark.e2e]
NAME = SAMPLE_PDF.name


@pytest.fixture(scope="module")
def served(plain_store: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, io.StringIO]]:
    store = copy_store(plain_store[0], tmp_path_factory.mktemp("docs-api") / "store")
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    audit = logging.getLogger("pipeline.service.audit")
    old = audit.level
    audit.setLevel(logging.INFO)
    try:
        with serve_in_thread(create_app(Settings(store=store, service={"api_token": TOKEN}, **NO_LLM_SETTINGS))) as s:
            yield s, logs
    finally:
        logging.getLogger().removeHandler(handler)
        audit.setLevel(old)


def client(s: Served, token: str | None = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=s.url, timeout=60, headers={"Authorization": f"Bearer {token}"} if token else {})


def test_list_show_filter_and_remove(served: tuple[Served, io.StringIO]) -> None:
    s, logs = served
    with client(s) as c:
        listed = c.get("/documents")
        assert listed.status_code == 200, listed.text
        assert [d["name"] for d in listed.json()] == [NAME] and listed.json()[0]["parents"] == 20

        shown = c.get(f"/documents/{NAME}")
        assert shown.status_code == 200 and len(shown.json()["parent_details"]) == 20
        missing = c.get("/documents/acl2020.pdf")
        assert missing.status_code == 404 and NAME in missing.json()["detail"]

        by_name = c.post("/retrieve", json={"query": "What is S2ORC?", "filters": {"doc": NAME}})
        assert by_name.status_code == 200 and by_name.json()["sources"][0]["names"] == [NAME]
        by_old_key = c.post("/retrieve", json={"query": "What is S2ORC?", "filters": {"doc_id": NAME}})
        assert [x["parent_id"] for x in by_old_key.json()["sources"]] == [x["parent_id"] for x in by_name.json()["sources"]]
        unknown = c.post("/retrieve", json={"query": "What is S2ORC?", "filters": {"doc": "acl2020.pdf"}})
        assert unknown.status_code == 422 and f"closest: {NAME}" in unknown.json()["detail"]

    with client(s, token=None) as anonymous:
        assert anonymous.delete(f"/documents/{NAME}").status_code == 401
    with client(s) as c:
        assert c.delete("/documents/nope.pdf").status_code == 404
        gone = c.delete(f"/documents/{NAME}")
        assert gone.status_code == 200, gone.text
        assert gone.json()["content"] == "removed"
        assert c.get("/documents").json() == []
        assert c.get("/status").json()["documents"] == 0
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]
    assert any(line.get("msg") == f"document removed: {NAME}" and line.get("content") == "removed" for line in lines), logs.getvalue()[-2000:]
