"""Several `pipeline enrich` processes on one database share the work per parent (issue 25, piece 2) —
real processes, the real SmolLM2 GGUF, the real server.

Kept cheap as tests/e2e/test_enrich.py does: two 3-page PDFs (2 parents each) and at most 128 tokens
per LLM call. There is no Qdrant server here, so each worker writes its summaries and questions into
its own copy of the embedded store; the docstore, cache, ledger and leases are shared in PostgreSQL.
Every parent must be enriched by exactly one worker: no LLM call paid twice, no reference written twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.pdfs import page_text, write_pdf
from tests.fleet.test_workers import finish, points, worker
from tests.pgdb import pg_url  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.llm]
SMALL_LLM = {"PIPELINE_LLM__PROVIDER": "llamacpp", "PIPELINE_LLM__MAX_TOKENS": "128"}


def enrich(store: Path, url: str, ns: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    env.update(SMALL_LLM, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"), PIPELINE_DATABASE__URL=url, PIPELINE_DATABASE__NAMESPACE=ns)
    if "PIPELINE_MODEL_CACHE" in os.environ:
        env["PIPELINE_MODEL_CACHE"] = os.environ["PIPELINE_MODEL_CACHE"]
    return subprocess.Popen([sys.executable, "-m", "pipeline", "enrich", "--store", str(store), "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_enrich_workers_enrich_each_parent_once(tmp_path: Path, pg_url: str) -> None:
    pytest.importorskip("xllamacpp")
    folder = tmp_path / "docs"
    for i in range(2):
        write_pdf(folder / f"e{i}.pdf", [page_text(f"e{i}p{j}") for j in range(3)])
    phase1 = finish(worker(tmp_path / "a", folder, pg_url, "fleet"))  # searchable first, no LLM
    n = phase1["stats"]["parents"]
    assert n >= 4
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the second worker's own copy of the vectors

    a, b = enrich(tmp_path / "a", pg_url, "fleet"), enrich(tmp_path / "b", pg_url, "fleet")
    ra, rb = (finish(p)["stats"] for p in (a, b))
    assert ra["parents_enriched"] + rb["parents_enriched"] == n  # each parent by one worker...
    assert ra["parents_unenriched"] == rb["parents_unenriched"] == 0  # the other's parents count as done, not left
    print("split:", ra["parents_enriched"], rb["parents_enriched"], "llm calls:", ra["llm_calls"], rb["llm_calls"])
    assert 2 * n <= ra["llm_calls"] + rb["llm_calls"] <= 3 * n  # ...so no LLM call paid twice
    pa, pb = points(tmp_path / "a"), points(tmp_path / "b")
    for coll in ("docs_summaries", "docs_questions"):
        assert not pa[coll] & pb[coll], coll  # no reference written by both
    assert len(pa["docs_summaries"] | pb["docs_summaries"]) == n

    from pipeline.config import Settings
    from pipeline.store.state import open_ledger_reader

    entries = open_ledger_reader(Settings(store=tmp_path / "x", database={"url": pg_url, "namespace": "fleet"})).ledger().values()
    assert all(e.pending is None for e in entries)  # no commit half done
    enriched = {pid: e.enriched[pid] for e in entries for pid in e.parents}  # every parent's enrichment recorded:
    assert len(enriched) == n and all(x.fingerprint for x in enriched.values())  # no commit lost to another's
    recorded = {i for x in enriched.values() for i in x.refs.get("summaries", [])}
    assert recorded == pa["docs_summaries"] | pb["docs_summaries"]
