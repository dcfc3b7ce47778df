"""Documents as objects (issue 23), with real processes on real stores: `docs list|show|rm`, names accepted
wherever a document is named, same-content aliases, and a removal killed (SIGKILL) mid-protocol."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, Run, copy_store, run_cli
from tests.e2e.test_recovery import killed_at, snapshot

pytestmark = pytest.mark.e2e
NAME = SAMPLE_PDF.name


@pytest.fixture(scope="module")
def aliased(tmp_path_factory: pytest.TempPathFactory, plain_store: tuple[Path, Run]) -> dict[str, Any]:
    """The sample store plus a folder holding the same bytes as ``mixed/paper.pdf`` and an unsupported file."""
    base = tmp_path_factory.mktemp("aliased")
    store = copy_store(plain_store[0], base / "store")
    folder = base / "docs"
    (folder / "mixed").mkdir(parents=True)
    shutil.copy2(SAMPLE_PDF, folder / "mixed" / "paper.pdf")
    (folder / "figure.png").write_bytes(b"\x89PNG not a document")
    run = run_cli("ingest", str(folder), "--store", str(store), "--json", env=NO_LLM)
    assert run.code == 0, run.stderr
    return {"store": store, "folder": folder, "run": run}


def docs(store: Path) -> dict[str, dict[str, Any]]:
    listed = run_cli("docs", "list", "--json", "--store", str(store))
    assert listed.code == 0, listed.stderr
    return {d["name"]: d for d in listed.json["documents"]}


class TestList:
    def test_lists_name_id_pages_parents_size_hash(self, plain_store: tuple[Path, Run]) -> None:
        rows = docs(plain_store[0])
        assert list(rows) == [NAME]
        row = rows[NAME]
        assert row["doc_id"] == SAMPLE_PDF.resolve().as_posix()
        assert row["pages"] == 15 and row["parents"] == 20 and row["enriched_parents"] == 0
        assert row["size"] == SAMPLE_PDF.stat().st_size
        assert len(row["content_hash"]) == 64 and row["ingested_at"].endswith("Z")

    def test_read_only_commands_on_a_missing_store_create_nothing(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere"
        for args in (["docs", "list"], ["docs", "show", NAME]):
            run = run_cli(*args, "--store", str(missing))
            assert run.code == 2 and f"no store at {missing}" in run.stderr, run.stderr
        assert not missing.exists()


class TestShow:
    def test_parents_in_order_with_pages_and_text(self, plain_store: tuple[Path, Run]) -> None:
        run = run_cli("docs", "show", NAME, "--json", "--store", str(plain_store[0]))
        assert run.code == 0, run.stderr
        parents = run.json["parent_details"]
        assert [p["readable_id"] for p in parents] == [f"{NAME}#parent-{i}" for i in range(20)]
        assert parents[0]["pages"] == [1] and "S2ORC" in parents[0]["text"]
        assert all(p["summary"] is None and p["questions"] == [] for p in parents)  # not enriched

    def test_unknown_name_lists_the_closest(self, plain_store: tuple[Path, Run]) -> None:
        run = run_cli("docs", "show", "acl2020.acl-main.448.pdf", "--store", str(plain_store[0]))
        assert run.code == 2
        assert "no document named 'acl2020.acl-main.448.pdf'" in run.stderr and f"closest: {NAME}" in run.stderr


class TestNames:
    def test_query_by_name_finds_what_the_absolute_path_finds(self, plain_store: tuple[Path, Run]) -> None:
        store = str(plain_store[0])
        by_name = run_cli("query", "What is S2ORC?", "--doc", NAME, "--retrieve-only", "--json", "--store", store)
        by_id = run_cli("query", "What is S2ORC?", "--doc-id", SAMPLE_PDF.resolve().as_posix(), "--retrieve-only", "--json", "--store", store)
        assert by_name.code == 0 and by_id.code == 0, by_name.stderr + by_id.stderr
        assert by_name.json["sources"] and [s["parent_id"] for s in by_name.json["sources"]] == [s["parent_id"] for s in by_id.json["sources"]]
        assert by_name.json["sources"][0]["names"] == [NAME]

    def test_unknown_doc_is_exit_2_with_closest_names_not_an_empty_result(self, plain_store: tuple[Path, Run]) -> None:
        run = run_cli("query", "What is S2ORC?", "--doc-id", "acl2020.pdf", "--retrieve-only", "--store", str(plain_store[0]))
        assert run.code == 2, run.stdout
        assert "no document named 'acl2020.pdf'" in run.stderr and NAME in run.stderr


class TestAlias:
    def test_same_bytes_are_recorded_as_a_second_name_without_embedding(self, aliased: dict[str, Any]) -> None:
        report = aliased["run"].json
        assert report["stats"]["embedded_texts"] == 0
        paper = next(f for f in report["files"] if f["path"].endswith("paper.pdf"))
        assert paper["status"] == "added" and "same content as" in paper["reason"]
        rows = docs(aliased["store"])
        assert rows["mixed/paper.pdf"]["alias_of"] == NAME and rows[NAME]["aliases"] == ["mixed/paper.pdf"]
        assert run_cli("check", "--store", str(aliased["store"])).code == 0

    def test_one_result_with_both_names(self, aliased: dict[str, Any]) -> None:
        run = run_cli("query", "What is S2ORC?", "--retrieve-only", "--top-k", "5", "--json", "--store", str(aliased["store"]))
        assert run.code == 0, run.stderr
        ids = [s["parent_id"] for s in run.json["sources"]]
        assert len(ids) == len(set(ids)) == 5
        assert run.json["sources"][0]["names"] == [NAME, "mixed/paper.pdf"]
        alias_only = run_cli("query", "What is S2ORC?", "--doc", "mixed/paper.pdf", "--retrieve-only", "--json", "--store", str(aliased["store"]))
        assert alias_only.code == 0 and alias_only.json["sources"], alias_only.stderr

    def test_removing_one_name_keeps_the_content_for_the_other(self, aliased: dict[str, Any], tmp_path: Path) -> None:
        store = copy_store(aliased["store"], tmp_path / "store")
        first = run_cli("docs", "rm", NAME, "--store", str(store))
        assert first.code == 0, first.stderr
        rows = docs(store)
        assert list(rows) == ["mixed/paper.pdf"] and rows["mixed/paper.pdf"]["parents"] == 20
        found = run_cli("query", "What is S2ORC?", "--doc", "paper.pdf", "--retrieve-only", "--json", "--store", str(store))
        assert found.code == 0 and found.json["sources"], found.stderr
        assert run_cli("check", "--store", str(store)).code == 0
        last = run_cli("docs", "rm", "mixed/paper.pdf", "--store", str(store))
        assert last.code == 0, last.stderr
        points = snapshot(store)
        assert points["parents"] == set() and all(not ids for ids in points["points"].values()) and points["ledger"] == {}


class TestRemove:
    def test_rm_removes_parents_references_and_ledger(self, plain_store: tuple[Path, Run], tmp_path: Path) -> None:
        store = copy_store(plain_store[0], tmp_path / "store")
        run = run_cli("docs", "rm", NAME, "--json", "--store", str(store))
        assert run.code == 0, run.stderr
        assert run.json["removed"] == [{"name": NAME, "doc_id": SAMPLE_PDF.resolve().as_posix(), "content": "removed"}]
        after = snapshot(store)
        assert after["parents"] == set() and after["ledger"] == {} and all(not ids for ids in after["points"].values())
        assert run_cli("check", "--store", str(store)).code == 0

    def test_unknown_name_removes_nothing(self, plain_store: tuple[Path, Run], tmp_path: Path) -> None:
        store = copy_store(plain_store[0], tmp_path / "store")
        before = snapshot(store)
        run = run_cli("docs", "rm", NAME, "nope.pdf", "--store", str(store))
        assert run.code == 2 and "no document named 'nope.pdf'" in run.stderr
        assert snapshot(store) == before

    def test_killed_mid_removal_check_accepts_and_a_rerun_finishes(self, plain_store: tuple[Path, Run], tmp_path: Path) -> None:
        store = copy_store(plain_store[0], tmp_path / "store")
        killed_at("remove-after-delete-refs", ["docs", "rm", NAME, "--store", str(store)], {}, tmp_path)
        check = run_cli("check", "--json", "--store", str(store))
        assert check.code == 0, check.stdout
        assert {p["kind"] for p in check.json["problems"]} == {"pending-removal"}
        assert docs(store)[NAME]["state"] == "removing"
        again = run_cli("docs", "rm", NAME, "--store", str(store))
        assert again.code == 0, again.stderr
        after = snapshot(store)
        assert after["parents"] == set() and after["ledger"] == {} and all(not ids for ids in after["points"].values())
        assert run_cli("check", "--store", str(store)).code == 0
