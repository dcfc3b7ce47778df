"""Ingest embeds batches side by side on every core (issue 26): the vectors are the ones one thread gives."""

from __future__ import annotations

import numpy as np

from pipeline.providers.encoder import MiniLMEncoder

TEXTS = [f"Paragraph {i}: AlexNet was trained on two GPUs; the network was split across them. " * (1 + i % 7) for i in range(40)]


def test_batches_side_by_side_give_the_same_vectors_as_one_thread() -> None:
    one = np.array(MiniLMEncoder(threads=1).embed_texts(TEXTS))
    two_enc = MiniLMEncoder(threads=2)
    two = np.array(two_enc.embed_texts(TEXTS))
    assert two_enc._workers is not None and two_enc._workers._max_workers == 2  # the parallel path ran
    assert one.shape == (40, 384)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)


def test_one_thread_uses_no_worker_pool() -> None:
    enc = MiniLMEncoder(threads=1)
    enc.embed_texts(TEXTS[:20])
    assert getattr(enc, "_workers", None) is None


def test_ingest_batches_run_side_by_side_with_the_vectors_of_one_thread() -> None:
    """LlamaIndex's groups of ``embed_batch_size`` texts, embedded ``threads`` at a time, give exactly
    the vectors of one thread (each group embedded as alone: the int8 model depends on batch-mates)."""
    from pipeline.providers.embeddings import OnnxEmbedding

    one = OnnxEmbedding.wrap(MiniLMEncoder(threads=1, batch_size=8)).get_text_embedding_batch(TEXTS)
    two = OnnxEmbedding.wrap(MiniLMEncoder(threads=2, batch_size=8))
    got = two.get_text_embedding_batch(TEXTS)
    assert two.encoder._workers is not None and two.usage.texts == len(TEXTS)
    assert np.array_equal(np.array(got), np.array(one))
