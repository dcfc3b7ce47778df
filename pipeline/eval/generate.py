"""Folder → a LabelledRagDataset of LLM-written questions, like LlamaIndex's ``generate_question_context_pairs``.

Each parent (the same 1024-token split ingestion uses) gets ``questions_per_parent`` questions from the
configured LLM; the parent text is the reference context. The result is written in the llama-datasets
format (``rag_dataset.json`` + ``source_files/``), so ``eval`` reads it like any downloaded set.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from llama_index.core.llms import LLM, ChatMessage

from pipeline.errors import ConfigError, EnrichError, LoadError
from pipeline.eval.datasets import RAG_DATASET_FILE, SOURCE_DIR
from pipeline.ingest.enrich import parse_questions
from pipeline.ingest.load import discover, load_document
from pipeline.ingest.split import ParentSplitter

logger = logging.getLogger(__name__)

# Short on purpose: LlamaIndex's QA prompt ("You are a Teacher/ Professor ...") makes small models loop.
QA_PROMPT = (
    "Passage:\n{context_str}\n\nWrite {num_questions} different questions that the passage answers. "
    "Each question must be answerable from the passage alone and name a specific term, number or name from it. "
    "One question per line."
)

# Called with (event, detail): "parent" after each parent with {"done", "total", "path"}.
GenerateProgressFn = Callable[[str, dict], None]


def _noop(event: str, detail: dict) -> None:
    return None


class QuestionGenerator:
    """Write ``questions_per_parent`` questions for every parent of every file in a folder.

    Example:
        path = QuestionGenerator(llm, questions_per_parent=2).generate(Path("papers/"), Path("my_eval/"))
        load_dataset(path.parent)  # an EvalDataset
    """

    def __init__(
        self,
        llm: LLM,
        questions_per_parent: int = 2,
        parent_chunk_size: int = 1024,
        prompt: str = QA_PROMPT,
        progress: GenerateProgressFn = _noop,
    ) -> None:
        if questions_per_parent < 1:
            raise ConfigError(f"questions_per_parent must be at least 1, got {questions_per_parent}")
        if llm is None:
            raise ConfigError("generating questions needs an LLM: set llm.provider to llamacpp or openai")
        self.llm = llm
        self.questions_per_parent = questions_per_parent
        self.parent_chunk_size = parent_chunk_size
        self.prompt = prompt
        self.progress = progress

    def _ask(self, text: str) -> list[str]:
        prompt = self.prompt.format(context_str=text, num_questions=self.questions_per_parent)
        try:
            raw = self.llm.chat([ChatMessage(role="user", content=prompt)]).message.content or ""
        except Exception as exc:
            raise EnrichError(f"LLM failed while writing questions: {type(exc).__name__}: {exc}") from exc
        return parse_questions(raw, self.questions_per_parent)

    def generate(self, source: Path, out_dir: Path) -> Path:
        """Write ``out_dir/rag_dataset.json`` and copy the sources to ``out_dir/source_files/``.

        Returns:
            The path of ``rag_dataset.json``.

        Raises:
            ConfigError: no readable file under ``source``, or no question could be written.
        """
        files = list(discover([source]))
        splitter = ParentSplitter(chunk_size=self.parent_chunk_size)
        root = source if source.is_dir() else source.parent
        model = self.llm.metadata.model_name
        examples: list[dict] = []
        copied: list[tuple[Path, Path]] = []
        for path in files:
            try:
                doc = load_document(path)
            except LoadError as exc:
                logger.warning("generate: skipped %s", exc)
                continue
            parents = splitter([doc])
            for i, parent in enumerate(parents):
                text = parent.get_content()
                for q in self._ask(text):
                    examples.append(
                        {
                            "query": q,
                            "query_by": {"model_name": model, "type": "ai"},
                            "reference_contexts": [text],
                            "reference_answer": "",
                            "reference_answer_by": None,
                        }
                    )
                self.progress("parent", {"done": i + 1, "total": len(parents), "path": str(path)})
            copied.append((path, out_dir / SOURCE_DIR / path.relative_to(root)))
        if not examples:
            raise ConfigError(f"{source}: no questions written (no readable file, or the LLM wrote no question)")
        for src, dst in copied:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        target = out_dir / RAG_DATASET_FILE
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"examples": examples}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(target)
        logger.info("generate: %d questions from %d file(s) → %s", len(examples), len(copied), target)
        return target
