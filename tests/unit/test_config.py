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


def test_an_empty_store_path_is_refused() -> None:
    with pytest.raises(ValueError, match="store path is empty"):
        Settings(store="")


def test_a_store_inside_another_store_is_refused(tmp_path: Path) -> None:
    outer = tmp_path / "clean"
    (outer / "edge" / "docs_children").mkdir(parents=True)
    (outer / "edge" / "docs_children" / "collection.json").write_text("{}")
    (outer / "docstore.sqlite").write_bytes(b"")
    for inner in (outer / "edge", outer / "edge" / "docs_children", outer / "sub" / "store"):
        with pytest.raises(ValueError, match="inside the store at"):
            Settings(store=inner)
    assert Settings(store=outer).store == outer  # the store itself, and folders beside it, are fine
    assert Settings(store=tmp_path / "other").store == tmp_path / "other"


def test_an_empty_store_option_is_refused_before_it_becomes_the_current_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pipeline", "status", "--store", ""], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "store path is empty" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder
