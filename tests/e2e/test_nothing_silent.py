"""Issue 23, point 5 ("Nothing silent"), with real processes and a real service.

Files left out of a folder for their type are named in the CLI summary, the ``--json`` report and the
job report; ``status`` and ``check`` on a missing store say "no store at …" (exit 2) and create nothing;
``--version``; Ctrl-C during an ingest says what finished and that the same command resumes (exit 130),
and the same command does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from pipeline.config import Settings
from pipeline.service.app import create_app
from tests.conftest import ROOT
from tests.e2e.conftest import NO_LLM, run_cli, wait_for_job
from tests.e2e.test_service import FERRY, NO_LLM_SETTINGS, TOKEN, serve_in_thread

pytestmark = [pytest.mark.e2e]

UNSUPPORTED = {"letter.docx", "pic.png", "table.csv"}


def mixed_folder(base: Path) -> Path:
    """One readable file and three of types the pipeline does not read (one in a sub-folder), plus a
    hidden file that stays unmentioned (a ``.DS_Store`` is nobody's document)."""
    docs = base / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "ferry.txt").write_text(FERRY + "\n")
    (docs / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (docs / "sub" / "table.csv").write_text("a,b\n1,2\n")
    (docs / "letter.docx").write_bytes(b"PK\x03\x04")
    (docs / ".DS_Store").write_bytes(b"\0")
    return docs


def test_unsupported_files_are_named_in_the_cli_summary_and_the_json_report(tmp_path: Path) -> None:
    docs = mixed_folder(tmp_path)
    store = tmp_path / "store"
    first = run_cli("ingest", str(docs), "--store", str(store), "--json", env=NO_LLM)
    assert first.code == 0, first.stderr  # skipped for their type is not a failure
    report = first.json
    skipped = [f for f in report["files"] if f["status"] == "skipped"]
    assert {Path(f["path"]).name for f in skipped} == UNSUPPORTED
    assert all("unsupported type" in f["reason"] and ".pdf, .txt, .md" in f["reason"] for f in skipped)
    assert report["stats"]["files_skipped"] == 3 and report["stats"]["files_added"] == 1
    assert not any(".DS_Store" in f["path"] for f in report["files"])

    again = run_cli("ingest", str(docs), "--store", str(store), env=NO_LLM)  # the table a person reads
    assert again.code == 0, again.stderr
    assert "files skipped (unsupported type)" in again.stderr and "3: letter.docx, pic.png, table.csv" in again.stderr
    for name in UNSUPPORTED:
        assert f"skipped {next(docs.rglob(name))}: unsupported type" in again.stderr


def test_unsupported_files_are_named_in_the_job_report(tmp_path: Path) -> None:
    docs = mixed_folder(tmp_path)
    settings = Settings(store=tmp_path / "store", service={"api_token": TOKEN, "ingest_roots": [docs]}, **NO_LLM_SETTINGS)
    with serve_in_thread(create_app(settings)) as served, httpx.Client(
        base_url=served.url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as c:
        posted = c.post("/ingest", json={"paths": [str(docs)]})
        assert posted.status_code == 202, posted.text
        job = wait_for_job(c, posted.json()["id"])
    assert job["state"] == "succeeded", job
    files = job["report"]["files"]
    assert {Path(f["path"]).name for f in files if f["status"] == "skipped"} == UNSUPPORTED
    assert job["report"]["stats"]["files_skipped"] == 3 and job["report"]["stats"]["files_added"] == 1


@pytest.mark.parametrize("command", ["status", "check"])
def test_read_only_commands_on_a_missing_or_empty_store_exit_2_and_create_nothing(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "missing" / "store"
    empty = tmp_path / "empty"
    empty.mkdir()
    for store in (missing, empty):
        run = run_cli(command, "--store", str(store), env=NO_LLM)
        assert run.code == 2, (store, run.stdout, run.stderr)
        assert f"no store at {store}" in run.stderr
    assert not missing.parent.exists()
    assert list(empty.iterdir()) == []


def test_version_comes_from_the_package_metadata() -> None:
    run = run_cli("--version")
    assert run.code == 0 and run.stdout.strip() == f"pipeline {version('pipeline')}"


def random_text(path: Path, paragraphs: int, seed: int) -> Path:
    """Text no cache has seen (made-up words), long enough that embedding it takes seconds."""
    import random

    rnd = random.Random(seed)
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9))) for _ in range(2000)]
    text = "\n\n".join(" ".join(" ".join(rnd.choice(words) for _ in range(rnd.randint(8, 16))) + "." for _ in range(6)) for _ in range(paragraphs))
    path.write_text(text)
    return path


def test_ctrl_c_during_ingest_says_what_finished_and_the_same_command_resumes(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(FERRY + "\n")
    random_text(docs / "b.txt", paragraphs=40, seed=23)  # ~13 parents: still in progress 0.5 s after it starts, also with 2 embedding threads
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_"))}
    env.update(NO_LLM, PIPELINE_CONFIG=str(ROOT / "tests" / "no-config.toml"))
    if "PIPELINE_MODEL_CACHE" in os.environ:
        env["PIPELINE_MODEL_CACHE"] = os.environ["PIPELINE_MODEL_CACHE"]
    args = [sys.executable, "-m", "pipeline", "ingest", str(docs), "--store", str(store)]
    # SIGINT back to its default in the child: a test run started in the background (`cmd &` in a script,
    # nohup) ignores SIGINT, children inherit that, and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # non-tty progress: one log line per document started and finished
            seen.append(line)
            if "ingesting" in line and "b.txt" in line:
                time.sleep(0.5)
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stderr.read()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any("searchable" in line and "a.txt" in line for line in seen), "".join(seen)
    assert code == 130, rest
    assert "stopped by Ctrl-C: 1 of 2 documents finished and searchable: a.txt" in rest, rest
    assert "run the same command again to resume" in rest

    resumed = run_cli("ingest", str(docs), "--store", str(store), "--json", env=NO_LLM)
    assert resumed.code == 0, resumed.stderr
    assert {Path(f["path"]).name: f["status"] for f in resumed.json["files"]} == {"a.txt": "unchanged", "b.txt": "added"}
