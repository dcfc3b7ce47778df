"""Parent → summary and question ``IndexNode`` references, written by the configured LLM.

Own prompts rather than LlamaIndex's extractors: their long prompts make 135M–1.5B models loop, and
their output lands in the metadata of every node (and so in every embedding). Here the summary and
each question are nodes of their own that embed only their text. Both prompts open with the same
``Passage:`` block so llama.cpp reuses the processed passage for the second call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from llama_index.core.llms import LLM, ChatMessage
from llama_index.core.schema import BaseNode, TransformComponent
from pydantic import PrivateAttr
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.errors import EnrichError
from pipeline.ingest.reference import is_parent, make_ref
from pipeline.models import RefKind

logger = logging.getLogger(__name__)

SUMMARY_PROMPT = "Passage:\n{context_str}\n\nWrite a summary of the passage in 2 to 4 sentences."
QUESTIONS_PROMPT = (
    "Passage:\n{context_str}\n\nWrite {num_questions} questions about specific facts stated in the passage. "
    "Each question must name a specific term, number or method from the passage. One question per line."
)
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\(?\d+[.):]|Q\d*[.:]|Question\s*\d*[.:])\s*", re.IGNORECASE)


def parse_questions(text: str, limit: int) -> list[str]:
    """Lines of LLM output → at most ``limit`` distinct questions, numbering stripped."""
    seen: list[str] = []
    for line in text.splitlines():
        q = _NUMBERING.sub("", line).strip().strip('"').strip()
        if len(q) < 8 or not q.endswith("?"):
            continue
        if q.lower() not in (s.lower() for s in seen):
            seen.append(q)
        if len(seen) == limit:
            break
    return seen


class ParentEnricher(TransformComponent):
    """Ask the LLM for one summary and ``num_questions`` questions per parent; add them as references.

    ``llm_name`` and the prompts are public fields so the ingest cache key changes when they do.

    Example:
        nodes = ParentEnricher(llm_name="smollm2", num_questions=5).with_llm(llm)(nodes)
    """

    llm_name: str
    num_questions: int = 5
    summary_prompt: str = SUMMARY_PROMPT
    questions_prompt: str = QUESTIONS_PROMPT
    max_attempts: int = 3

    _llm: LLM | None = PrivateAttr(default=None)

    def with_llm(self, llm: LLM) -> "ParentEnricher":
        self._llm = llm
        return self

    def _ask(self, prompt: str) -> str:
        assert self._llm is not None, "ParentEnricher needs with_llm(llm) before use"

        @retry(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=1, max=20),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        )
        def call() -> str:
            return self._llm.chat([ChatMessage(role="user", content=prompt)]).message.content or ""

        try:
            return call().strip()
        except Exception as exc:
            raise EnrichError(f"LLM failed after {self.max_attempts} attempts: {type(exc).__name__}: {exc}") from exc

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[BaseNode]:
        out: list[BaseNode] = list(nodes)
        for parent in nodes:
            if not is_parent(parent):
                continue
            text = parent.get_content()
            summary = self._ask(self.summary_prompt.format(context_str=text))
            if summary:
                out.append(make_ref(parent, RefKind.SUMMARY, 0, summary))
            raw = self._ask(self.questions_prompt.format(context_str=text, num_questions=self.num_questions))
            questions = parse_questions(raw, self.num_questions)
            if len(questions) < self.num_questions:  # 135M models often stop early or repeat themselves
                logger.debug(
                    "%s: LLM wrote %d of %d questions",
                    parent.metadata.get("readable_id", parent.node_id),
                    len(questions),
                    self.num_questions,
                )
            for i, q in enumerate(questions):
                out.append(make_ref(parent, RefKind.QUESTION, i, q))
        return out
