"""A restore killed midway is finished (its copy was whole) or undone (it was not) by the next restore."""

from __future__ import annotations

from pathlib import Path

from pipeline.store.snapshot import COMPLETE, REPLACED, STAGED, finish_interrupted_restore


def files(store: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in store.iterdir() if p.is_file()}


def test_a_whole_staged_copy_is_moved_in(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / STAGED).mkdir(parents=True)
    (store / REPLACED).mkdir()
    (store / REPLACED / "docstore.sqlite").write_text("old")  # moved aside before the crash
    (store / "cache.sqlite").write_text("old cache")  # not yet
    (store / REPLACED / "cache.sqlite").write_text("unused")
    (store / STAGED / "docstore.sqlite").write_text("new")
    (store / STAGED / COMPLETE).write_text("")
    assert finish_interrupted_restore(store) == "finished an interrupted restore"
    assert files(store) == {"docstore.sqlite": "new", "cache.sqlite": "old cache"}
    assert not (store / STAGED).exists() and not (store / REPLACED).exists()


def test_an_unfinished_copy_is_dropped_and_the_old_files_put_back(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / STAGED).mkdir(parents=True)
    (store / STAGED / "docstore.sqlite").write_text("half a copy")
    (store / REPLACED).mkdir()
    (store / REPLACED / "docstore.sqlite").write_text("old")
    (store / "cache.sqlite").write_text("old cache")
    assert finish_interrupted_restore(store) == "undid an interrupted restore (the store is as it was before it)"
    assert files(store) == {"docstore.sqlite": "old", "cache.sqlite": "old cache"}
    assert not (store / STAGED).exists() and not (store / REPLACED).exists()


def test_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / "docstore.sqlite").write_text("x")
    assert finish_interrupted_restore(tmp_path) is None and files(tmp_path) == {"docstore.sqlite": "x"}
