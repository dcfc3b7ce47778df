"""Evaluation question sets → ``EvalDataset``: a LlamaIndex ``LabelledRagDataset`` folder or an
``EmbeddingQAFinetuneDataset`` JSON, with the source files to ingest.

Formats read:
- LabelledRagDataset: a folder with ``rag_dataset.json`` (``examples[].query``,
  ``examples[].reference_contexts``) and ``source_files/`` (the format of the llama-datasets hub);
  the JSON file itself may be given instead of the folder.
- EmbeddingQAFinetuneDataset: one JSON object ``{"queries": {qid: text}, "corpus": {node_id: text},
  "relevant_docs": {qid: [node_id, ...]}}`` (the notebook's ``generate_question_context_pairs``
  output); a query's reference contexts are the corpus texts of its relevant docs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

RAG_DATASET_FILE = "rag_dataset.json"
SOURCE_DIR = "source_files"


class DatasetFormat(str, Enum):
    """LABELLED_RAG: LlamaIndex ``LabelledRagDataset``. EMBEDDING_QA: ``EmbeddingQAFinetuneDataset``."""

    LABELLED_RAG = "labelled_rag"
    EMBEDDING_QA = "embedding_qa"


@dataclass(frozen=True)
class EvalExample:
    """One question and the texts a retrieved parent must cover to count as relevant."""

    query: str
    reference_contexts: tuple[str, ...]
    reference_answer: str = ""  # the labelled answer, when the set has one (answer containment)


@dataclass(frozen=True)
class EvalDataset:
    """Examples plus the files to ingest (``sources`` empty: the corpus texts must be ingested instead)."""

    name: str
    path: Path
    format: DatasetFormat
    examples: tuple[EvalExample, ...]
    sources: tuple[Path, ...] = ()
    corpus: tuple[str, ...] = field(default=(), repr=False)  # EmbeddingQA corpus texts, in file order

    def limited(self, limit: int | None) -> "EvalDataset":
        """The first ``limit`` examples (all with None), for quick runs."""
        if limit is None or limit >= len(self.examples):
            return self
        return EvalDataset(self.name, self.path, self.format, self.examples[:limit], self.sources, self.corpus)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such dataset file") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON dataset ({exc})") from exc


def _source_files(folder: Path) -> tuple[Path, ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted(p for p in folder.rglob("*") if p.is_file()))


def _labelled(path: Path, data: dict[str, Any], name: str, sources: tuple[Path, ...]) -> EvalDataset:
    examples = []
    skipped = 0
    for i, ex in enumerate(data.get("examples") or []):
        query = (ex.get("query") or "").strip()
        contexts = tuple(c for c in (ex.get("reference_contexts") or []) if c and c.strip())
        if not query or not contexts:
            skipped += 1
            continue
        examples.append(EvalExample(query=query, reference_contexts=contexts, reference_answer=(ex.get("reference_answer") or "").strip()))
    if skipped:
        logger.warning("%s: skipped %d example(s) without a query or reference_contexts", path, skipped)
    if not examples:
        raise ConfigError(f"{path}: no example has both a query and reference_contexts")
    return EvalDataset(name=name, path=path, format=DatasetFormat.LABELLED_RAG, examples=tuple(examples), sources=sources)


def _embedding_qa(path: Path, data: dict[str, Any], name: str, sources: tuple[Path, ...]) -> EvalDataset:
    queries: dict[str, str] = data.get("queries") or {}
    corpus: dict[str, str] = data.get("corpus") or {}
    relevant: dict[str, list[str]] = data.get("relevant_docs") or {}
    examples = []
    for qid, query in queries.items():
        contexts = tuple(corpus[n] for n in relevant.get(qid, []) if corpus.get(n, "").strip())
        if query.strip() and contexts:
            examples.append(EvalExample(query=query.strip(), reference_contexts=contexts))
    if len(examples) < len(queries):
        logger.warning("%s: skipped %d quer(ies) without relevant corpus text", path, len(queries) - len(examples))
    if not examples:
        raise ConfigError(f"{path}: no query has a relevant document in the corpus")
    return EvalDataset(
        name=name,
        path=path,
        format=DatasetFormat.EMBEDDING_QA,
        examples=tuple(examples),
        sources=sources,
        corpus=tuple(corpus.values()),
    )


def load_dataset(path: Path, sources: Path | None = None) -> EvalDataset:
    """Read a dataset folder or JSON file.

    Args:
        path: a folder holding ``rag_dataset.json``, or a LabelledRagDataset / EmbeddingQA JSON file.
        sources: file or folder to ingest; default ``source_files/`` beside the JSON. An EmbeddingQA
            set without sources is evaluated over its own corpus texts.

    Raises:
        ConfigError: missing file, unknown format, no usable example, or no sources for a labelled set.
    """
    path = path.expanduser()
    if path.is_dir():
        folder, json_path = path, path / RAG_DATASET_FILE
        name = path.resolve().name
    else:
        folder, json_path = path.parent, path
        name = path.stem if path.stem != "rag_dataset" else path.resolve().parent.name
    data = _read_json(json_path)
    if not isinstance(data, dict):
        raise ConfigError(f"{json_path}: expected a JSON object")
    if sources is not None:
        if not sources.exists():
            raise ConfigError(f"{sources}: no such sources file or folder")
        files = _source_files(sources) if sources.is_dir() else (sources,)
    else:
        files = _source_files(folder / SOURCE_DIR)
    if "examples" in data:
        if not files:
            raise ConfigError(f"{json_path}: no source files: put them in {folder / SOURCE_DIR} or pass --sources")
        return _labelled(json_path, data, name, files)
    if "queries" in data and "corpus" in data:
        return _embedding_qa(json_path, data, name, files)
    raise ConfigError(
        f"{json_path}: unknown dataset format: expected LabelledRagDataset ('examples') "
        "or EmbeddingQAFinetuneDataset ('queries', 'corpus', 'relevant_docs')"
    )
