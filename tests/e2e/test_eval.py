"""`python -m pipeline eval` end to end on a tiny dataset built here from the sample PDF (no LLM: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.ingest.load import load_document
from tests.conftest import SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, run_cli

pytestmark = pytest.mark.e2e

UNRELATED = (
    "The Solana blockchain uses proof of history, a sequence of SHA-256 hashes that acts as a clock "
    "before consensus, so validators agree on the order of transactions without talking to each other. "
) * 6


def passages(text: str, n: int, size: int = 1500) -> list[str]:
    """``n`` reference contexts cut at evenly spaced places of the text (not aligned with our parents)."""
    step = (len(text) - size) // n
    return [text[i * step + 137 : i * step + 137 + size] for i in range(n)]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LabelledRagDataset folder: 4 answerable questions over ~4 pages of the sample, 1 unanswerable."""
    root = tmp_path_factory.mktemp("tiny_eval") / "tiny"
    (root / "source_files").mkdir(parents=True)
    text = load_document(SAMPLE_PDF).text[:14_000]
    (root / "source_files" / "s2orc_intro.txt").write_text(text, encoding="utf-8")
    examples = []
    for ctx in passages(text, 4):
        # The query is a sentence from the middle of the context, so every mode should find it.
        middle = ctx[len(ctx) // 2 :]
        query = middle[middle.find(". ") + 2 :][:160]
        examples.append({"query": query, "reference_contexts": [ctx], "reference_answer": ""})
    examples.append({"query": "How does proof of history order transactions?", "reference_contexts": [UNRELATED]})
    (root / "rag_dataset.json").write_text(json.dumps({"examples": examples}), encoding="utf-8")
    return root


def test_eval_json_and_reuse(tiny_dataset: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    args = ("eval", str(tiny_dataset), "--store", str(store), "--top-k", "2,10", "--json")
    first = run_cli(*args, env=NO_LLM, timeout=300)
    assert first.code == 0, first.stderr
    out = first.json
    assert out["dataset"] == "tiny" and out["examples"] == 5
    assert out["oracle_coverage"] == pytest.approx(0.8)  # the unrelated reference is in no parent
    assert set(out["results"]) == {"base", "chunk", "metadata", "all"}
    keys = {"hit@2", "mrr@2", "hit@10", "mrr@10", "parents_returned", "latency_ms_p50"}
    for mode, r in out["results"].items():
        assert keys <= set(r), mode
        assert 0.0 <= r["mrr@2"] <= r["hit@2"] <= r["hit@10"] <= 1.0
    # ~4 parents and k=10: every parent comes back, so every answerable question is a hit.
    assert out["results"]["base"]["hit@10"] == pytest.approx(0.8)
    assert out["results"]["chunk"]["mrr@2"] >= 0.5
    assert out["results"]["all"]["mrr@10"] >= 0.5
    # No LLM: the summary and question collections are empty, so metadata finds what base finds.
    for key in ("hit@2", "mrr@2", "hit@10", "mrr@10", "parents_returned"):
        assert out["results"]["metadata"][key] == out["results"]["base"][key], key
    eval_store = Path(out["store"])
    assert eval_store.parent == store / "eval" and eval_store.name.startswith("tiny-")
    assert out["ingest"]["embedded_texts"] > 0

    # Second run: the isolated store is reused; nothing is embedded again, the numbers are the same.
    second = run_cli(*args, env=NO_LLM, timeout=300)
    assert second.code == 0, second.stderr
    again = second.json
    assert again["store"] == out["store"]
    assert again["ingest"]["embedded_texts"] == 0 and again["ingest"]["files_unchanged"] == 1
    for mode in out["results"]:
        assert again["results"][mode]["mrr@10"] == out["results"][mode]["mrr@10"]


def test_eval_table_and_embedding_qa_format(tiny_dataset: Path, tmp_path: Path) -> None:
    """EmbeddingQAFinetuneDataset JSON without source files: its corpus texts are ingested."""
    text = (tiny_dataset / "source_files" / "s2orc_intro.txt").read_text(encoding="utf-8")
    chunks = passages(text, 3, size=2500)
    qa = {
        "queries": {f"q{i}": c[c.find(". ", 1000) + 2 :][:150] for i, c in enumerate(chunks)},
        "corpus": {f"n{i}": c for i, c in enumerate(chunks)},
        "relevant_docs": {f"q{i}": [f"n{i}"] for i in range(len(chunks))},
        "mode": "text",
    }
    path = tmp_path / "qa_pairs.json"
    path.write_text(json.dumps(qa), encoding="utf-8")
    run = run_cli("eval", str(path), "--store", str(tmp_path / "store"), "--modes", "base,chunk", "--top-k", "3", env=NO_LLM, timeout=300)
    assert run.code == 0, run.stderr
    assert "hit@3" in run.stdout and "MRR@3" in run.stdout and "chunk" in run.stdout
    assert "oracle coverage 1.000" in run.stdout


def test_eval_rejects_unknown_mode_and_missing_dataset(tmp_path: Path) -> None:
    bad_mode = run_cli("eval", str(tmp_path), "--modes", "base,nope", env=NO_LLM, timeout=60)
    assert bad_mode.code == 2 and "unknown mode 'nope'" in bad_mode.stderr
    missing = run_cli("eval", str(tmp_path / "none"), "--store", str(tmp_path / "store"), env=NO_LLM, timeout=60)
    assert missing.code == 2 and "no such dataset file" in missing.stderr
