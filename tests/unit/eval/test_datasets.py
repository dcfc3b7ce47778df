"""Loading LabelledRagDataset folders and EmbeddingQAFinetuneDataset JSON into EvalDataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.eval.datasets import DatasetFormat, load_dataset


def write_labelled(root: Path, examples: list[dict]) -> Path:
    (root / "source_files").mkdir(parents=True)
    (root / "source_files" / "a.txt").write_text("alpha text", encoding="utf-8")
    (root / "rag_dataset.json").write_text(json.dumps({"examples": examples}), encoding="utf-8")
    return root


class TestLabelledRag:
    def test_folder(self, tmp_path: Path) -> None:
        root = write_labelled(tmp_path / "set", [{"query": "q1?", "reference_contexts": ["c1", "c2"]}])
        ds = load_dataset(root)
        assert ds.name == "set" and ds.format is DatasetFormat.LABELLED_RAG
        assert ds.examples[0].reference_contexts == ("c1", "c2")
        assert [p.name for p in ds.sources] == ["a.txt"]

    def test_json_file_and_skipped_examples(self, tmp_path: Path) -> None:
        root = write_labelled(tmp_path / "set", [{"query": "q1?", "reference_contexts": ["c1"]}, {"query": "q2?", "reference_contexts": None}])
        ds = load_dataset(root / "rag_dataset.json")
        assert ds.name == "set" and len(ds.examples) == 1

    def test_limit(self, tmp_path: Path) -> None:
        root = write_labelled(tmp_path / "set", [{"query": f"q{i}?", "reference_contexts": ["c"]} for i in range(5)])
        assert len(load_dataset(root).limited(2).examples) == 2

    def test_needs_sources(self, tmp_path: Path) -> None:
        (tmp_path / "rag_dataset.json").write_text(json.dumps({"examples": [{"query": "q", "reference_contexts": ["c"]}]}))
        with pytest.raises(ConfigError, match="no source files"):
            load_dataset(tmp_path)

    def test_missing_and_unknown(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="no such dataset file"):
            load_dataset(tmp_path / "nothing")
        (tmp_path / "x.json").write_text(json.dumps({"rows": []}))
        with pytest.raises(ConfigError, match="unknown dataset format"):
            load_dataset(tmp_path / "x.json")


class TestEmbeddingQA:
    def test_queries_map_to_corpus_texts(self, tmp_path: Path) -> None:
        data = {
            "queries": {"a": "first?", "b": "second?", "c": "orphan?"},
            "corpus": {"n1": "text one", "n2": "text two"},
            "relevant_docs": {"a": ["n1"], "b": ["n2", "n1"], "c": ["gone"]},
        }
        (tmp_path / "pairs.json").write_text(json.dumps(data))
        ds = load_dataset(tmp_path / "pairs.json")
        assert ds.format is DatasetFormat.EMBEDDING_QA and ds.name == "pairs"
        assert [e.reference_contexts for e in ds.examples] == [("text one",), ("text two", "text one")]
        assert ds.sources == () and ds.corpus == ("text one", "text two")
