from pathlib import Path

import pytest

from pipeline.config import EmbedProvider, LLMProvider, Settings


def test_defaults_are_offline() -> None:
    s = Settings()
    assert s.embed.provider is EmbedProvider.ONNX and s.llm.provider is LLMProvider.LLAMACPP
    assert s.llm.threads == 1 and s.qdrant.url is None and s.store == Path("storage")


def test_env_and_established_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_STORE", "/tmp/x")
    monkeypatch.setenv("PIPELINE_LLM__PROVIDER", "openai")
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    s = Settings()
    assert s.store == Path("/tmp/x") and s.llm.provider is LLMProvider.OPENAI
    assert s.qdrant.url == "http://qdrant:6333"
    assert s.openai_api_key is not None and "sk-test" not in repr(s)


def test_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "pipeline.toml"
    cfg.write_text('[retrieval]\ntop_k = 7\n[ingest.pdf_passwords]\n"a.pdf" = "pw"\n')
    monkeypatch.setenv("PIPELINE_CONFIG", str(cfg))
    s = Settings()
    assert s.retrieval.top_k == 7 and s.ingest.pdf_passwords == {"a.pdf": "pw"}


def test_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_LLM__PROVIDER", "gpt-banana")
    with pytest.raises(ValueError, match="llm.provider"):
        Settings()


def test_reference_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.models import RefKind

    assert Settings().retrieval.weights() == {RefKind.SUMMARY: 0.9, RefKind.QUESTION: 0.7}
    monkeypatch.setenv("PIPELINE_RETRIEVAL__QUESTION_WEIGHT", "0.5")
    assert Settings().retrieval.weights()[RefKind.QUESTION] == 0.5
    monkeypatch.setenv("PIPELINE_RETRIEVAL__METADATA_WEIGHT", "1.0")  # the older single setting sets both
    assert Settings().retrieval.weights() == {RefKind.SUMMARY: 1.0, RefKind.QUESTION: 1.0}
    monkeypatch.setenv("PIPELINE_RETRIEVAL__METADATA_WEIGHT", "1.5")
    with pytest.raises(ValueError, match="metadata_weight"):
        Settings()
