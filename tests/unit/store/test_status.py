"""`status` on a store that does not exist says so, exits 2 and creates nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings
from pipeline.errors import StoreUnavailable
from pipeline.store.status import store_status


def test_missing_store_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(StoreUnavailable, match=f"no store at {missing}: nothing has been ingested there"):
        store_status(Settings(store=missing))
    assert not missing.exists()


def test_an_empty_folder_or_a_folder_with_only_an_engine_lock_is_no_store(tmp_path: Path) -> None:
    """Issue 23: a folder without a docstore (made by hand, or left by an old ``query`` that created
    ``edge/.lock``) was reported as an empty store with exit 0; opening it also created ``edge/``."""
    for store in (tmp_path / "empty", tmp_path / "lock-only"):
        store.mkdir()
        if store.name == "lock-only":
            (store / "edge").mkdir()
            (store / "edge" / ".lock").touch()
        before = sorted(p.relative_to(store) for p in store.rglob("*"))
        with pytest.raises(StoreUnavailable, match=f"no store at {store}"):
            store_status(Settings(store=store))
        assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_cli_status_on_a_missing_store_exits_2_with_one_json_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setattr("sys.argv", ["pipeline", "status", "--json", "--store", str(missing)])  # fail() reads --json from argv
    result = CliRunner().invoke(app, ["status", "--json", "--store", str(missing)])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "StoreUnavailable" and "pipeline ingest PATH" in error["message"]
    assert not missing.exists()


def test_ledger_reader_agrees_with_the_parent_store(tmp_path: Path) -> None:
    from llama_index.core.schema import TextNode

    from pipeline.store.docstore import LedgerReader, ParentStore

    path = tmp_path / "docstore.sqlite"
    store = ParentStore(path)
    store.put([TextNode(id_="p1", text="one"), TextNode(id_="p2", text="two")])
    store.put_ledger("/d/a.pdf", {"parents": ["p1", "p2"], "pending": None})
    store.record_failure("/d/b.pdf", "/d/b.pdf", "encrypted", "2026-01-01T00:00:00Z")
    reader = LedgerReader(path)
    try:
        assert reader.ledger() == store.ledger() and reader.failures() == store.failures() and reader.count() == store.count() == 2
    finally:
        reader.close()
        store.close()


def test_status_imports_no_llama_index(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    store = tmp_path / "store"
    store.mkdir()
    from pipeline.store.docstore import ParentStore  # a docstore makes a folder a store (an empty one is "no store at …")

    ParentStore(store / "docstore.sqlite").close()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "status", "--json", "--store", str(store)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PIPELINE_CONFIG": str(ROOT / "tests" / "no-config.toml")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["documents"] == 0
    assert not [line for line in proc.stderr.splitlines() if line.startswith("import time:") and "llama_index" in line]
