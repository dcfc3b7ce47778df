"""Recovery with real processes: `enrich` and `ingest --sync` killed (SIGKILL) at every step of the ledger
protocol, then the documented recovery; and every kind of on-disk damage `check` must find and
`check --repair` must rebuild from the docstore and the ingest cache.

The kill points are the protocol's own hook (``PIPELINE_FAULT_PAUSE``): the process touches a marker
and waits there, the test kills it. The enrichment cases reuse the LLM output of one real SmolLM2 run
(its ingest cache), so each kill costs a process start, not generations.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, SMALL_LLM, Run, copy_store, killed_at, run_cli
from tests.e2e.conftest import store_snapshot as snapshot
from tests.e2e.pdfs import page_text, write_pdf

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def enrich_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-parent PDF ingested without an LLM (``plain``), and the same enriched by SmolLM2 (``enriched``):
    its cache holds the LLM output every kill case below reuses."""
    pytest.importorskip("xllamacpp")
    base = tmp_path_factory.mktemp("enrich-recovery")
    pdf = write_pdf(base / "docs" / "ferry.pdf", [page_text(f"r{i}") for i in range(3)])
    plain = base / "plain"
    assert run_cli("ingest", str(pdf), "--store", str(plain), env=NO_LLM).code == 0
    enriched = copy_store(plain, base / "enriched")
    done = run_cli("enrich", "--store", str(enriched), "--json", env=SMALL_LLM)
    assert done.code == 0, done.stderr
    assert done.json["stats"]["parents_enriched"] >= 2
    return {"pdf": pdf, "plain": plain, "enriched": enriched, "reference": snapshot(enriched)}


ENRICH_STEPS = ["enrich-after-intent", "enrich-after-summaries", "enrich-after-questions", "enrich-after-delete-refs", "enrich-after-flush"]


@pytest.mark.llm
@pytest.mark.parametrize("step", ENRICH_STEPS)
def test_killed_enrich_then_the_documented_recovery_deletes_nothing_and_converges(step: str, enrich_case: dict[str, Any], tmp_path: Path) -> None:
    store = copy_store(enrich_case["plain"], tmp_path / "store")
    shutil.copy2(enrich_case["enriched"] / "cache.sqlite", store / "cache.sqlite")  # the LLM output, cached
    killed_at(step, ["enrich", "--store", str(store)], SMALL_LLM, tmp_path)
    after_kill = snapshot(store)

    # `ingest`: the document is unchanged and whole; its parent references stay in the ledger.
    again = run_cli("ingest", str(enrich_case["pdf"]), "--store", str(store), "--json", env=NO_LLM)
    assert again.code == 0, again.stderr
    assert again.json["stats"]["files_unchanged"] == 1
    doc = next(iter(after_kill["ledger"]))
    assert snapshot(store)["ledger"][doc]["refs"]["parents"] == after_kill["ledger"][doc]["refs"]["parents"] != []

    check = run_cli("check", "--json", "--store", str(store))
    assert "old-layout" not in {p["kind"] for p in check.json["problems"]}
    repair = run_cli("check", "--repair", "--json", "--store", str(store))
    assert repair.code == 0, repair.stdout + repair.stderr
    repaired = snapshot(store)
    for name, ids in after_kill["points"].items():  # nothing whose parent exists was deleted
        assert ids <= repaired["points"][name], (name, repair.stdout)
    assert run_cli("check", "--store", str(store)).code == 0

    # Base-mode queries answer; `enrich` finishes from the cache and the store is the uninterrupted run's.
    base = run_cli("query", "r1", "--mode", "base", "--retrieve-only", "--json", "--store", str(store), env=NO_LLM)
    assert base.code == 0 and base.json["sources"], base.stderr
    finish = run_cli("enrich", "--store", str(store), "--json", env=SMALL_LLM)
    assert finish.code == 0, finish.stderr
    assert finish.json["stats"]["llm_calls"] == 0  # cached
    assert snapshot(store) == enrich_case["reference"]
    assert run_cli("check", "--store", str(store)).code == 0


@pytest.fixture(scope="module")
def sync_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("sync-recovery")
    corpus = base / "docs"
    write_pdf(corpus / "keep.pdf", [page_text("k0"), page_text("k1")])
    write_pdf(corpus / "gone.pdf", [page_text("g0"), page_text("g1")])
    initial = base / "initial"
    assert run_cli("ingest", str(corpus), "--store", str(initial), env=NO_LLM).code == 0
    reference = copy_store(initial, base / "reference")
    (corpus / "gone.pdf").rename(base / "gone.pdf")
    assert run_cli("ingest", str(corpus), "--sync", "--store", str(reference), env=NO_LLM).code == 0
    (base / "gone.pdf").rename(corpus / "gone.pdf")
    return {"corpus": corpus, "initial": initial, "reference": snapshot(reference), "aside": base / "gone.pdf"}


@pytest.mark.parametrize("step", ["remove-after-intent", "remove-after-delete-refs", "remove-after-flush"])
def test_killed_sync_removal_leaves_a_store_check_accepts_and_the_rerun_finishes(step: str, sync_case: dict[str, Any], tmp_path: Path) -> None:
    corpus = sync_case["corpus"]
    store = copy_store(sync_case["initial"], tmp_path / "store")
    (corpus / "gone.pdf").rename(sync_case["aside"])
    try:
        killed_at(step, ["ingest", str(corpus), "--sync", "--store", str(store)], NO_LLM, tmp_path)
        check = run_cli("check", "--json", "--store", str(store))
        assert check.code == 0 and check.json["ok"], check.stdout
        rerun = run_cli("ingest", str(corpus), "--sync", "--store", str(store), env=NO_LLM)
        assert rerun.code == 0, rerun.stderr
    finally:
        sync_case["aside"].rename(corpus / "gone.pdf")
    assert snapshot(store) == sync_case["reference"]
    assert run_cli("check", "--store", str(store)).code == 0


# --- damage -------------------------------------------------------------------------------------

QUESTION = "How does SciBERT differ from a BERT model pretrained on S2ORC?"


def _segment(store: Path, coll: str = "docs_children") -> Path:
    return next((store / "edge" / coll / "segments").iterdir())


def _overwrite(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(os.urandom(path.stat().st_size))


DAMAGE = {
    # what a user or a disk does -> the kind `check` must report
    "collection folder moved aside": (lambda s: shutil.move(str(s / "edge" / "docs_parents"), str(s / "parents-aside")), "missing-collection"),
    "random bytes over the vector file": (lambda s: _overwrite(next((_segment(s) / "vector_storage" / "vectors").glob("chunk_*"))), "corrupt-vectors"),
    "truncated payload page": (lambda s: os.truncate(next((_segment(s) / "payload_storage").glob("page_*")), 4096), "damaged-collection"),
    "garbage collection.json": (lambda s: (s / "edge" / "docs_children" / "collection.json").write_text("{bad"), "damaged-collection"),
    "garbage segment.json": (lambda s: (_segment(s) / "segment.json").write_text("{bad"), "damaged-collection"),
    "garbage edge_config.json": (lambda s: (s / "edge" / "docs_children" / "edge_config.json").write_text("{bad"), "damaged-collection"),
}


@pytest.fixture(scope="module")
def answers(plain_store: tuple[Path, Run]) -> list[str]:
    store, _ = plain_store
    got = run_cli("query", QUESTION, "--retrieve-only", "--json", "--store", str(store), env=NO_LLM)
    assert got.code == 0, got.stderr
    return [s["parent_id"] for s in got.json["sources"]]


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_found_and_repair_rebuilds_without_embedding(damage: str, plain_store: tuple[Path, Run], answers: list[str], tmp_path: Path) -> None:
    do, kind = DAMAGE[damage]
    store = copy_store(plain_store[0], tmp_path / "store")
    do(store)
    check = run_cli("check", "--json", "--store", str(store))
    assert check.code == 1, check.stdout + check.stderr
    assert kind in {p["kind"] for p in check.json["problems"]}, check.stdout
    repair = run_cli("check", "--repair", "--json", "--store", str(store))
    assert repair.code == 0, repair.stdout + repair.stderr
    assert any("(0 texts embedded)" in r for r in repair.json["repaired"]), repair.json["repaired"]
    assert not any("check --repair" in r for r in repair.json["repaired"])  # never its own advice
    assert run_cli("check", "--deep", "--store", str(store)).code == 0
    got = run_cli("query", QUESTION, "--retrieve-only", "--json", "--store", str(store), env=NO_LLM)
    assert got.code == 0, got.stderr
    assert [s["parent_id"] for s in got.json["sources"]] == answers


def test_ingest_does_not_call_a_document_unchanged_whose_references_are_gone(plain_store: tuple[Path, Run], answers: list[str], tmp_path: Path) -> None:
    store = copy_store(plain_store[0], tmp_path / "store")
    shutil.rmtree(store / "edge" / "docs_parents")
    run = run_cli("ingest", str(SAMPLE_PDF), "--store", str(store), "--json", env=NO_LLM)
    assert run.code == 0, run.stderr
    assert run.json["stats"]["files_unchanged"] == 0 and run.json["stats"]["embedded_texts"] == 0
    assert run_cli("check", "--store", str(store)).code == 0
    got = run_cli("query", QUESTION, "--retrieve-only", "--json", "--mode", "base", "--store", str(store), env=NO_LLM)
    assert got.json["sources"], got.stderr


def test_dry_run_and_ingest_agree_after_a_settings_change(tmp_path: Path) -> None:
    """The dry run once decided "unchanged" without the settings fingerprint the real run checks."""
    pdf = write_pdf(tmp_path / "docs" / "small.pdf", [page_text("d0"), page_text("d1")])
    store = tmp_path / "store"
    assert run_cli("ingest", str(pdf), "--store", str(store), env=NO_LLM).code == 0
    same = run_cli("ingest", str(pdf), "--dry-run", "--json", "--store", str(store), env=NO_LLM)
    assert same.code == 0 and same.json["counts"] == {"unchanged": 1}, same.stdout + same.stderr
    changed = {**NO_LLM, "PIPELINE_INGEST__CHUNK_OVERLAP": "30"}
    dry = run_cli("ingest", str(pdf), "--dry-run", "--json", "--store", str(store), env=changed)
    assert dry.code == 0 and dry.json["counts"] == {"update": 1}, dry.stdout + dry.stderr
    real = run_cli("ingest", str(pdf), "--json", "--store", str(store), env=changed)
    assert real.code == 0 and real.json["stats"]["files_updated"] == 1, real.stderr
