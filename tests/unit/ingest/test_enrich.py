"""pipeline/ingest/enrich.py: the questions parser and the one-call-plus-one-retry contract."""

from __future__ import annotations

from typing import Any

from llama_index.core.llms import ChatMessage, ChatResponse, MockLLM

from pipeline.ingest.enrich import ParentEnricher, parse_questions


class TestParseQuestions:
    def test_numbered_list_with_preamble(self) -> None:
        raw = "Here are 5 questions:\n1. What is S2ORC?\n2) How many papers does it hold?\n3. Which fields does it cover?\n4. Who released it?\n5. What is SciBERT?"
        assert parse_questions(raw, 5) == ["What is S2ORC?", "How many papers does it hold?", "Which fields does it cover?", "Who released it?", "What is SciBERT?"]

    def test_several_questions_on_one_line(self) -> None:
        assert parse_questions("1. What is X made of? 2. How big is the corpus? 3. Why use PDF files?", 5) == [
            "What is X made of?", "How big is the corpus?", "Why use PDF files?"]

    def test_missing_question_mark_bullets_bold_and_duplicates(self) -> None:
        raw = "- 1. What does the parser extract\n**2. What does the parser extract?**\nQ3: How are citations linked?\nThe passage is about parsing."
        assert parse_questions(raw, 5) == ["What does the parser extract?", "How are citations linked?"]

    def test_limit(self) -> None:
        assert len(parse_questions("\n".join(f"{i}. What is item number {i}?" for i in range(1, 9)), 5)) == 5


class Scripted(MockLLM):
    """Answers the summary prompt with one sentence and the question prompts from a script."""

    def __init__(self, answers: list[str], **kw: Any) -> None:
        super().__init__(**kw)
        object.__setattr__(self, "_answers", list(answers))
        object.__setattr__(self, "prompts", [])

    def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:  # type: ignore[override]
        prompt = messages[-1].content
        self.prompts.append(prompt)
        text = "A summary." if "summary" in prompt else self._answers.pop(0)
        return ChatResponse(message=ChatMessage(role="assistant", content=text))


def five(start: int = 1) -> str:
    return "\n".join(f"{i}. What is fact number {i} here?" for i in range(start, start + 5))


class TestQuestionsFor:
    def test_one_call_when_the_list_is_complete(self) -> None:
        llm = Scripted([five()])
        assert len(ParentEnricher(llm_name="s", num_questions=5).with_llm(llm).questions_for("text")) == 5
        assert len(llm.prompts) == 1 and "numbered list from 1 to 5" in llm.prompts[0]

    def test_one_retry_for_the_missing_ones_never_more(self) -> None:
        llm = Scripted(["1. What is fact number 1 here?\n2. What is fact number 2 here?", "1. What is fact number 2 here?\n2. What is fact number 9 here?"])
        questions = ParentEnricher(llm_name="s", num_questions=5).with_llm(llm).questions_for("text")
        assert questions == ["What is fact number 1 here?", "What is fact number 2 here?", "What is fact number 9 here?"]
        assert len(llm.prompts) == 2 and "3 more questions" in llm.prompts[1] and "What is fact number 1 here?" in llm.prompts[1]


class TestPolicy:
    """ingest.enrich and answer.mode by the numbers: SmolLM2's references and answers are not worth waiting for."""

    def test_auto_skips_smollm2_and_enriches_with_a_capable_llm(self) -> None:
        from pipeline.config import Settings
        from pipeline.ingest.run import enrich_during_ingest
        from pipeline.retrieve.extract import answer_mode_for

        smol = Settings(llm={"provider": "llamacpp"})
        qwen = Settings(llm={"provider": "llamacpp", "model": "qwen2.5-coder-1.5b"})
        remote = Settings(llm={"provider": "openai", "api_base": "http://127.0.0.1:8080/v1"})
        assert [enrich_during_ingest(s) for s in (smol, qwen, remote)] == [False, True, True]
        assert [answer_mode_for(s) for s in (smol, qwen, remote)] == ["extractive", "llm", "llm"]
        assert enrich_during_ingest(Settings(llm={"provider": "llamacpp"}, ingest={"enrich": "now"}))
        assert answer_mode_for(smol, "llm") == "llm" and answer_mode_for(qwen, "none") == "none"

    def test_old_boolean_setting_still_works(self) -> None:
        from pipeline.config import EnrichPolicy, Settings

        assert Settings(ingest={"enrich": True}).ingest.enrich is EnrichPolicy.NOW
        assert Settings(ingest={"enrich": "false"}).ingest.enrich is EnrichPolicy.LATER
