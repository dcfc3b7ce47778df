"""Schema-driven tests: schemathesis generates requests from the service's own OpenAPI schema, valid and
invalid, and sends them to the ASGI app in-process (real store, real embedder; a MockLLM answers /query).

Every response must be a non-5xx that matches the schema (status documented, content type, body
model). Run with and without a token; without it nothing but /healthz may succeed (401, or 400/422
for a body that cannot be parsed at all).
The counts of requests, invalid inputs and 5xx are printed and kept in docs/service.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline.config import Settings
from pipeline.ingest.run import Ingestor
from pipeline.providers.embeddings import build_embedder
from pipeline.service.app import create_app
from pipeline.service.deps import ServiceState
from tests.e2e.conftest import copy_store

pytestmark = pytest.mark.e2e

TOKEN = "tok-schema-5b1e0c9a7d3f4e2b8a6c"
NO_LLM: dict[str, Any] = {"llm": {"provider": "none"}, "ingest": {"enrich": False}}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 120  # per generation mode and auth variant: keeps the whole module under a minute here
TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """(store, ingest root, embedder): one small text document ingested without an LLM."""
    base = tmp_path_factory.mktemp("schema")
    root = base / "docs"
    root.mkdir()
    (root / "ferry.txt").write_text("The Quillmoor ferry carries exactly 417 bicycles across Lake Vantor every morning. " * 30)
    settings = Settings(store=base / "store", **NO_LLM)
    embedder = build_embedder(settings)
    assert Ingestor(settings, embedder=embedder).run([root]).stats.files_added == 1
    return settings.store, root, embedder


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    print("\nschema-driven requests:", json.dumps(dict(sorted(TALLY.items()))))


def service(built: tuple[Path, Path, Any], tmp_path: Path, token: str | None) -> tuple[ServiceState, Any]:
    from llama_index.core.llms import MockLLM

    store, root, embedder = built
    copy = copy_store(store, tmp_path / "store")  # embedded Qdrant: one client per folder
    cfg = Settings(store=copy, service={"api_token": token, "ingest_roots": [root], "public_docs": True}, **NO_LLM)
    state = ServiceState(cfg, embedder=embedder, llm=MockLLM(max_tokens=8))
    state.open()
    return state, create_app(cfg, state=state)


def fuzz(app: Any, mode: GenerationMode, label: str, headers: dict[str, str] | None, expect_401: bool = False) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        TALLY[f"{label} {mode.value}"] += 1
        TALLY[f"status {response.status_code // 100}xx"] += 1
        assert response.status_code < 500, (case.method, case.path, case.body, response.status_code, response.text[:300])
        if expect_401 and case.path != "/healthz":
            # Nothing succeeds without the token; a body that cannot even be parsed is refused (400/422)
            # before the token is looked at, everything else gets the 401.
            assert response.status_code in (400, 401, 413, 422), (case.method, case.path, response.status_code)
            TALLY["no-token refused"] += 1
        # 413 (over max_body_bytes) rejects too, but schemathesis' list of rejection codes lacks it.
        rejecting = mode is GenerationMode.NEGATIVE and response.status_code != 413
        case.validate_response(response, checks=CHECKS + ([negative_data_rejection] if rejecting else []))

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_token_no_5xx_and_responses_match_the_schema(built: tuple[Path, Path, Any], tmp_path: Path, mode: GenerationMode) -> None:
    state, app = service(built, tmp_path, token=None)
    try:
        fuzz(app, mode, "open", headers=None)
    finally:
        state.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_with_token_no_5xx_and_without_it_only_401(built: tuple[Path, Path, Any], tmp_path: Path, mode: GenerationMode) -> None:
    state, app = service(built, tmp_path, token=TOKEN)
    try:
        fuzz(app, mode, "token", headers={"Authorization": f"Bearer {TOKEN}"})
        fuzz(app, mode, "no-token", headers=None, expect_401=True)
    finally:
        state.close()
