"""A model file's sha256 is kept across processes while the file is the same one, and re-read when it is not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.providers import gather_first, onnx
from pipeline.providers.hashing import memo_sha256


def test_an_unchanged_file_is_not_hashed_again_and_a_changed_one_is(tmp_path: Path) -> None:
    weights, memo = tmp_path / "model.onnx", tmp_path / "cache" / "verified.json"
    weights.write_bytes(b"weights v1")
    assert memo_sha256(weights, memo) == hashlib.sha256(b"weights v1").hexdigest()
    recorded = json.loads(memo.read_text())
    recorded[str(weights.resolve())]["sha256"] = "0" * 64  # what a later process finds in the memo
    memo.write_text(json.dumps(recorded))
    assert memo_sha256(weights, memo) == "0" * 64  # read from the memo: the file was not hashed again
    weights.write_bytes(b"weights v2")  # any write changes the stamp (size, mtime, ctime)
    assert memo_sha256(weights, memo) == hashlib.sha256(b"weights v2").hexdigest()


def test_a_damaged_memo_or_an_unwritable_one_only_costs_a_hash(tmp_path: Path) -> None:
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"w")
    (tmp_path / "memo.json").write_text("{not json")
    assert memo_sha256(weights, tmp_path / "memo.json") == hashlib.sha256(b"w").hexdigest()
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    assert memo_sha256(weights, blocked / "verified.json") == hashlib.sha256(b"w").hexdigest()


def test_verify_refuses_a_file_replaced_after_it_was_recorded(tmp_path: Path) -> None:
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"good")
    good = hashlib.sha256(b"good").hexdigest()
    assert onnx.verify(weights, good) == weights
    assert str(weights.resolve()) in json.loads((gather_first.cache_dir() / onnx.MEMO).read_text())  # kept for the next process
    onnx._VERIFIED.clear()  # as in a new process
    weights.write_bytes(b"evil")
    with pytest.raises(ConfigError, match="does not match the pinned"):
        onnx.verify(weights, good)
