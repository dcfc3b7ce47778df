"""Shared helpers of the bench_*.py scripts: run a child process and measure it, describe the machine, write results.

Not a benchmark itself. Every result file records the machine, the date and the load average, because
these 2-core machines are shared and the numbers move with what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
PAPERS = ROOT.parent / "shared" / "corpus" / "papers"
ONE_PAPER = PAPERS / "acl2020.acl-main.447.pdf"
RESULTS = ROOT / "benchmarks" / "results" / "bench"
STORES = ROOT / "storage" / "bench"
NO_LLM = {"PIPELINE_LLM__PROVIDER": "none", "PIPELINE_INGEST__ENRICH": "false"}
QUERY = "How does SciBERT differ from a BERT model pretrained on S2ORC?"


def replay_args(doc: str | None, group: tuple[str, ...]) -> tuple[argparse.Namespace, list[tuple[str, ...]]]:
    """The command line of the replay scripts over eval stores: ``group`` (a dataset folder and its
    stores) repeated, and ``--out``. Returns the arguments and the groups."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("groups", nargs="+", metavar=" ".join(group), help=f"{' '.join(group)}, repeated")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    n = len(group)
    if len(args.groups) % n:
        ap.error(f"give {' '.join(group)} in groups of {n}")
    return args, [tuple(args.groups[i : i + n]) for i in range(0, len(args.groups), n)]


@dataclass
class ChildRun:
    """A finished child process: exit code, output, wall seconds and peak RSS in MiB."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float

    def json(self) -> Any:
        return json.loads(self.stdout)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "QDRANT_", "OPENAI_"))}
    env["PIPELINE_CONFIG"] = str(ROOT / "tests" / "no-config.toml")
    env.update(extra or {})
    return env


def run_child(args: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Start ``args`` in a new process and wait; wall time from spawn to exit, peak RSS from wait4."""
    import threading

    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, env=clean_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chunks: dict[str, str] = {}

    def drain(name: str, stream: Any) -> None:
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    # wait4 rather than Popen.wait: it returns this child's own resource usage (peak RSS).
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    return ChildRun(proc.returncode, chunks.get("out", ""), chunks.get("err", ""), seconds, usage.ru_maxrss / 1024)


def corpus_of(papers: list[Path], name: str) -> Path:
    """A new folder ``STORES/name`` of links to ``papers``: every child reads the same files in the
    same discovery order."""
    import shutil

    corpus = STORES / name
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    for p in papers:
        (corpus / p.name).symlink_to(p)
    return corpus


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2), flush=True)
    return path


def merge_results(path: Path, results: dict[str, Any]) -> None:
    """Add ``results`` (keyed by dataset and model) to the JSON file at ``path``, keeping other keys:
    tuning scripts run one dataset set at a time into one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(results)
    path.write_text(json.dumps(old, indent=1) + "\n")
