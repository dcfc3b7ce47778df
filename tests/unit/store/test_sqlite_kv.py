import errno
import os
import sqlite3
from pathlib import Path

import pytest

from pipeline.errors import DiskFull, StoreDamaged, StoreUnavailable, fatal_error
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

    def test_get_many_returns_the_present_keys_of_one_collection(self, tmp_path: Path) -> None:
        kv = SQLiteKVStore(tmp_path / "kv.sqlite")
        kv.put_all([(f"k{i}", {"n": i}) for i in range(1200)])  # more keys than one query's parameters
        kv.put("k1", {"n": -1}, collection="other")
        wanted = [f"k{i}" for i in range(0, 1200, 2)] + ["missing"]
        assert kv.get_many(wanted) == {f"k{i}": {"n": i} for i in range(0, 1200, 2)}
        assert kv.get_many(["k1"], collection="other") == {"k1": {"n": -1}}
        assert kv.get_many([]) == {}

    def test_persists_across_opens(self, tmp_path: Path) -> None:
        kv = SQLiteKVStore(tmp_path / "kv.sqlite")
        kv.put_all([("a", {"n": 1}), ("b", {"n": 2})])
        kv.close()
        again = SQLiteKVStore(tmp_path / "kv.sqlite")
        assert again.get_all() == {"a": {"n": 1}, "b": {"n": 2}}


class TestDamage:
    """A damaged file is diagnosed as damaged, naming the file and the next step; never a raw sqlite3 error."""

    def test_garbage_file_is_store_damaged(self, tmp_path: Path) -> None:
        path = tmp_path / "docstore.sqlite"
        path.write_bytes(b"this is not a database" * 100)
        with pytest.raises(StoreDamaged, match=r"docstore.sqlite is damaged .*check --repair"):
            SQLiteKVStore(path)

    def test_truncated_file_is_store_damaged_on_verify_and_read(self, tmp_path: Path) -> None:
        path = tmp_path / "docstore.sqlite"
        kv = SQLiteKVStore(path)
        kv.put_all([(f"k{i}", {"v": "x" * 500}) for i in range(400)])
        kv.close()
        os.truncate(path, path.stat().st_size // 2)
        with pytest.raises(StoreDamaged, match="malformed"):  # at open (the schema page) or at verify
            damaged = SQLiteKVStore(path)
            try:
                damaged.verify()
            finally:
                damaged.close()

    def test_damaged_cache_says_it_can_be_deleted(self, tmp_path: Path) -> None:
        path = tmp_path / "cache.sqlite"
        path.write_bytes(b"\0garbage" * 100)
        with pytest.raises(StoreDamaged, match="delete it; the next ingest rebuilds it"):
            SQLiteKVStore(path)


@pytest.mark.parametrize(
    ("exc", "kind", "needle"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/s/cache.sqlite"), DiskFull, "/s/cache.sqlite: cannot write"),
        (OSError(errno.EFBIG, "File too large", "/s/q"), DiskFull, "free disk space"),
        (PermissionError(errno.EACCES, "Permission denied", "/s/docstore.sqlite"), StoreUnavailable, "permission denied"),
        (sqlite3.OperationalError("database or disk is full"), DiskFull, "a SQLite file in /s"),
        (sqlite3.DatabaseError("database disk image is malformed"), StoreDamaged, "check --repair"),
    ],
)
def test_fatal_error_maps_the_environment_to_the_tree(exc: BaseException, kind: type, needle: str) -> None:
    error = fatal_error(exc, "/s")
    assert isinstance(error, kind) and needle in str(error)


def test_a_bug_is_not_disguised(tmp_path: Path) -> None:
    assert fatal_error(KeyError("x")) is None
