"""QuestionGenerator with a fake LLM: questions per parent, dataset format, copied sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata

from pipeline.errors import ConfigError
from pipeline.eval.datasets import load_dataset
from pipeline.eval.generate import QuestionGenerator


class FakeLLM(CustomLLM):
    """Answers every prompt with three numbered questions."""

    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="fake")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(text="1. What is alpha?\n2. Why is beta used?\n3. When did gamma start?")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


def test_two_questions_per_parent(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("Alpha beta gamma. " * 50, encoding="utf-8")
    (src / "empty.txt").write_text("", encoding="utf-8")  # skipped with a warning
    llm = FakeLLM()
    path = QuestionGenerator(llm, questions_per_parent=2).generate(src, tmp_path / "out")
    ds = load_dataset(path.parent)
    assert [e.query for e in ds.examples] == ["What is alpha?", "Why is beta used?"]
    assert ds.examples[0].reference_contexts[0].startswith("Alpha beta gamma.")
    assert [p.name for p in ds.sources] == ["a.txt"] and llm.calls == 1


def test_no_readable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no questions written"):
        QuestionGenerator(FakeLLM()).generate(tmp_path, tmp_path / "out")
