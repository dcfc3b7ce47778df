"""`pipeline migrate --to postgres` and `--to sqlite` (issue 25, piece 4): verified, resumable, identical answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, run_cli
from tests.pgdb import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
QUESTION = "What is S2ORC?"


def sources(store: Path, env: dict[str, str]) -> list:
    run = run_cli("query", QUESTION, "--retrieve-only", "--json", "--store", str(store), env={**NO_LLM, **env})
    assert run.code == 0, run.stderr
    return [(s["parent_id"], s["text"]) for s in json.loads(run.stdout)["sources"]]


def test_there_and_back_with_identical_answers(tmp_path: Path, pg_url: str) -> None:
    store = tmp_path / "store"
    assert run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), env=NO_LLM).code == 0
    in_sqlite = sources(store, {})
    db = {"PIPELINE_DATABASE__URL": pg_url}
    there = run_cli("migrate", "--to", "postgres", "--store", str(store), "--json", env=db)
    assert there.code == 0, there.stderr
    report = json.loads(there.stdout)
    assert report["rows"]["docstore"]["ledger"] == 1 and report["rows"]["cache"] and not report["skipped"]
    again = json.loads(run_cli("migrate", "--to", "postgres", "--store", str(store), "--json", env=db).stdout)
    assert len(again["skipped"]) == sum(len(c) for c in report["rows"].values()) and again["hashes"] == report["hashes"]  # resumed: nothing to redo
    for name in ("docstore.sqlite", "cache.sqlite"):  # the database alone must answer
        (store / name).rename(tmp_path / f"{name}.aside")
    assert sources(store, db) == in_sqlite
    back = run_cli("migrate", "--to", "sqlite", "--store", str(store), "--json", env=db)
    assert back.code == 0, back.stderr
    assert json.loads(back.stdout)["hashes"] == report["hashes"]
    assert sources(store, {}) == in_sqlite


def test_migrate_without_a_database_is_refused(tmp_path: Path) -> None:
    run = run_cli("migrate", "--to", "postgres", "--store", str(tmp_path / "s"))
    assert run.code != 0 and "PIPELINE_DATABASE__URL" in run.stderr
