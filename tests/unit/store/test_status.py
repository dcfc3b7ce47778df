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


def test_cli_status_on_a_missing_store_exits_2_with_one_json_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setattr("sys.argv", ["pipeline", "status", "--json", "--store", str(missing)])  # fail() reads --json from argv
    result = CliRunner().invoke(app, ["status", "--json", "--store", str(missing)])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "StoreUnavailable" and "pipeline ingest PATH" in error["message"]
    assert not missing.exists()
