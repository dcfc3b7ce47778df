"""Measure README command (1) — ingest the bundled sample into a new store, then ask it two questions —
and write the numbers the README quotes to ``benchmarks/results/quickstart.json``.

Each step runs as its own process, as a user runs it; wall time and peak RSS come from the child's
rusage, the load average is read before and after (the machine is often shared). Setup is not timed.

Usage: .venv/bin/python scripts/measure_quickstart.py [--out benchmarks/results/quickstart.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "acl2020.acl-main.447.pdf"
ANSWERED = "How does SciBERT differ from a BERT model pretrained on S2ORC?"
REFUSED = "What is the capital of France?"


def timed(args: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run one command; its own wall time, CPU time and peak RSS (``wait4`` on that child alone)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {
        "args": args,
        "exit": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux: KiB
        "stdout": stdout[-4000:],
        "stderr_tail": stderr[-1500:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quickstart.json")
    opts = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "storage")
        steps = [
            timed(["ingest", str(SAMPLE), "--store", store], env),
            timed(["query", ANSWERED, "--store", store], env),
            timed(["query", REFUSED, "--store", store], env),
            timed(["query", REFUSED, "--json", "--store", store], env),
        ]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
        "steps": steps,
        "first_answer_wall_s": round(sum(float(s["wall_s"]) for s in steps[:2]), 1),  # type: ignore[arg-type]
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    for s in steps:
        print(f"{' '.join(map(str, s['args']))[:70]:<72} exit {s['exit']}  {s['wall_s']} s wall  {s['cpu_s']} s CPU  {s['peak_rss_mb']} MB")
    print(f"first answer after {result['first_answer_wall_s']} s; load {result['load_1min_before']} -> {result['load_1min_after']}; written to {opts.out}")
    if any(s["exit"] != 0 for s in steps):
        sys.exit(1)


if __name__ == "__main__":
    main()
