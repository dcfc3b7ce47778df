"""The BM25 tokenizer and vectors: one function for documents and queries, deterministic, offline."""

from __future__ import annotations

import subprocess
import sys

from pipeline.providers import sparse


class TestTokenize:
    def test_lower_cases_stems_and_drops_stop_words(self) -> None:
        assert sparse.tokenize("The GPUs were Training the networks") == ["gpus", "train", "network"]

    def test_inflections_share_a_term(self) -> None:
        assert sparse.tokenize("connected")[0] == sparse.tokenize("connection")[0] == sparse.tokenize("connecting")[0]

    def test_only_stop_words_and_punctuation_give_nothing(self) -> None:
        assert sparse.tokenize("") == []
        assert sparse.tokenize("and the of, to -- it's!") == []

    def test_numbers_and_model_names_survive(self) -> None:
        assert sparse.tokenize("GTX-580 x86_64") == ["gtx", "580", "x86", "64"]

    def test_non_english_text_is_kept_not_dropped(self) -> None:
        assert sparse.tokenize("Ünïcode café 東京 Straße") == ["ünïcode", "café", "東京", "strass"]
        assert sparse.tokenize("Strasse") == sparse.tokenize("STRASSE") == sparse.tokenize("Straße")

    def test_overlong_tokens_are_dropped(self) -> None:
        assert sparse.tokenize("a" * 41 + " kept") == ["kept"]


class TestVectors:
    def test_document_weights_saturate_with_term_frequency(self) -> None:
        idx, vals = sparse.doc_vector("alexnet alexnet alexnet gpu")
        weights = dict(zip(idx, vals))
        assert weights[sparse.term_id("alexnet")] > weights[sparse.term_id("gpu")]
        assert weights[sparse.term_id("alexnet")] < 3 * weights[sparse.term_id("gpu")]  # BM25 saturation, not raw tf

    def test_longer_documents_weigh_a_term_less(self) -> None:
        short = dict(zip(*sparse.doc_vector("alexnet gpu")))
        long = dict(zip(*sparse.doc_vector("alexnet " + " ".join(f"word{i}" for i in range(400)))))
        assert long[sparse.term_id("alexnet")] < short[sparse.term_id("alexnet")]

    def test_query_vector_is_one_per_distinct_term(self) -> None:
        idx, vals = sparse.query_vector("Network networks NETWORK training")
        assert vals == [1.0] * len(idx) and len(idx) == 2
        assert idx == sorted(idx)

    def test_empty_document_has_a_placeholder_and_empty_query_has_nothing(self) -> None:
        assert sparse.doc_vector("") == ([0], [0.0])
        assert sparse.query_vector("the of") == ([], [])

    def test_same_text_same_vector_in_another_process(self) -> None:
        text = "Krizhevsky trained AlexNet on two GTX 580 GPUs"
        code = f"from pipeline.providers import sparse; print(sparse.doc_vector({text!r}))"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        assert other == str(sparse.doc_vector(text))

    def test_batch_forms_match_single(self) -> None:
        texts = ["first text here", "", "second"]
        assert sparse.doc_vectors(texts) == ([sparse.doc_vector(t)[0] for t in texts], [sparse.doc_vector(t)[1] for t in texts])
        assert sparse.query_vectors(texts)[0] == [sparse.query_vector(t)[0] for t in texts]
