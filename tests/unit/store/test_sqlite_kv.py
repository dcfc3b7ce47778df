from pathlib import Path

import pytest

from pipeline.store.sqlite_kv import SQLiteKVStore


class TestSQLiteKVStore:
    def test_roundtrip_and_collections(self, tmp_path: Path) -> None:
        kv = SQLiteKVStore(tmp_path / "kv.sqlite")
        kv.put("a", {"x": 1})
        kv.put("a", {"x": 2}, collection="other")
        assert kv.get("a") == {"x": 1}
        assert kv.get("a", collection="other") == {"x": 2}
        assert kv.get("missing") is None
        assert kv.count() == 1
        assert kv.delete("a") is True and kv.get("a") is None

    def test_transaction_is_atomic(self, tmp_path: Path) -> None:
        kv = SQLiteKVStore(tmp_path / "kv.sqlite")
        kv.put("keep", {"v": 0})
        with pytest.raises(RuntimeError):
            with kv.transaction():
                kv.put("keep", {"v": 1})
                kv.put("new", {"v": 1})
                raise RuntimeError("crash in the middle")
        assert kv.get("keep") == {"v": 0}
        assert kv.get("new") is None

    def test_persists_across_opens(self, tmp_path: Path) -> None:
        kv = SQLiteKVStore(tmp_path / "kv.sqlite")
        kv.put_all([("a", {"n": 1}), ("b", {"n": 2})])
        kv.close()
        again = SQLiteKVStore(tmp_path / "kv.sqlite")
        assert again.get_all() == {"a": {"n": 1}, "b": {"n": 2}}
