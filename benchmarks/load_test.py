"""Load test for the query service: N asyncio+httpx clients for T seconds against /retrieve or /query.

Each client sends its next request as soon as the previous one is answered (closed loop), cycling
through questions about the 41 papers in ../shared/corpus/papers. Latency percentiles, throughput
and error counts go to a JSON results file; ``--docs`` regenerates the table in docs/service.md from
every results file (never edit that table by hand).

    # start the service on a store, run 16 clients for 60 s against /retrieve, stop it, write results
    PIPELINE_LLM__PROVIDER=none .venv/bin/python benchmarks/load_test.py --spawn-store /tmp/svc-bench/store \
        --route retrieve --clients 16 --duration 60 --out benchmarks/results/service/retrieve_16x60.json --docs docs/service.md

    # or against a running service
    .venv/bin/python benchmarks/load_test.py --url http://127.0.0.1:8000 --route retrieve --clients 4 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
TABLE_BEGIN = "<!-- load-results:begin (benchmarks/load_test.py --docs) -->"
TABLE_END = "<!-- load-results:end -->"

# One question per paper of ../shared/corpus/papers, so consecutive requests hit different documents.
QUESTIONS = [
    "How does knowledge distillation transfer knowledge from an ensemble to a small model?",
    "What is residual learning and why do shortcut connections help very deep networks?",
    "How does multi-head self-attention work in the Transformer?",
    "What is the Reptile first-order meta-learning algorithm?",
    "How is BERT pre-trained with masked language modeling and next sentence prediction?",
    "How does Task2Vec embed tasks using the Fisher information matrix?",
    "Which tasks are included in the SuperGLUE benchmark?",
    "How was HellaSwag built with adversarial filtering?",
    "What training changes make RoBERTa better than BERT?",
    "How does Megatron-LM split transformer layers across GPUs with model parallelism?",
    "How much smaller and faster is DistilBERT than BERT?",
    "How does ZeRO remove memory redundancies in data-parallel training?",
    "How does MuZero plan with a learned model without knowing the rules?",
    "What subjects does the MMLU benchmark cover?",
    "How does the Vision Transformer split an image into patches?",
    "What is in the CodeNet dataset of code samples?",
    "How does PonderNet learn when to stop computing?",
    "Do prompt-based models really understand the meaning of their prompts?",
    "What architecture changes does Primer find for efficient language modeling?",
    "How does RETRO retrieve from a trillion-token database?",
    "How does the silicon strain sensor measure strain?",
    "How is novelty controlled in paraphrase generation?",
    "How does Paper Plain help readers understand medical papers?",
    "How does STaR bootstrap reasoning with self-generated rationales?",
    "How many parameters does PaLM have and how was it trained with Pathways?",
    "How can autoregressive language models be used as search engines?",
    "What is OPT and how does it compare to GPT-3?",
    "How does FlashAttention reduce memory reads and writes with tiling?",
    "What is the Multi-LexSum dataset of civil rights lawsuit summaries?",
    "Why do large language models struggle with long-tail knowledge?",
    "How do program-aided language models offload computation to a Python interpreter?",
    "How does DetectGPT detect machine-generated text with probability curvature?",
    "What did red teaming ChatGPT reveal about its ethical risks?",
    "How does CiteSee personalize citation recommendations while reading?",
    "On how many tokens were the LLaMA models trained?",
    "How can language models go beyond summarization for scientific papers?",
    "How does RWKV combine RNN efficiency with transformer training?",
    "What is S2ORC and how many papers does it contain?",
    "What does the EACL 2023 paper propose?",
    "What results are reported in the IOP conference paper?",
    "What is PaperMage and how does it represent scientific documents?",
]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


async def run_load(url: str, route: str, clients: int, duration: float, warmup: float, body_extra: dict[str, Any], token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    timeout = httpx.Timeout(300.0)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as http:

        async def client(index: int, until: float, record: bool) -> None:
            i = index * 7  # different clients start on different questions
            while time.perf_counter() < until:
                body = {"query": QUESTIONS[i % len(QUESTIONS)], **body_extra}
                i += 1
                started = time.perf_counter()
                retry_after = 0.0
                try:
                    resp = await http.post(f"/{route}", json=body)
                    status = str(resp.status_code)
                    if resp.status_code == 429:  # a polite client waits as told (counted as an error)
                        retry_after = min(float(resp.headers.get("retry-after", "1")), 30.0)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - started
                if record:
                    statuses[status] += 1
                    if status == "200":
                        latencies.append(elapsed)
                if retry_after:
                    await asyncio.sleep(min(retry_after, max(0.0, until - time.perf_counter())))

        if warmup > 0:
            until = time.perf_counter() + warmup
            await asyncio.gather(*(client(i, until, record=False) for i in range(clients)))
        started = time.perf_counter()
        until = started + duration
        await asyncio.gather(*(client(i, until, record=True) for i in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()
    errors = {k: v for k, v in statuses.items() if k != "200"}
    ms = [x * 1000 for x in latencies]
    return {
        "requests": sum(statuses.values()),
        "ok": statuses.get("200", 0),
        "errors": sum(errors.values()),
        "errors_by_status": errors,
        "seconds": round(wall, 2),
        "throughput_rps": round(statuses.get("200", 0) / wall, 2),
        "latency_ms": {
            "p50": round(percentile(ms, 50), 1),
            "p95": round(percentile(ms, 95), 1),
            "p99": round(percentile(ms, 99), 1),
            "mean": round(sum(ms) / len(ms), 1) if ms else 0.0,
            "max": round(ms[-1], 1) if ms else 0.0,
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_service(store: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m pipeline serve --store STORE`` on a free loopback port, logs to ``log_path``."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    cmd = [sys.executable, "-m", "pipeline", "serve", "--store", str(store), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=log, stdout=log)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(url: str, token: str | None, proc: subprocess.Popen[bytes] | None, timeout: float = 600) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode} before it was ready")
        try:
            resp = httpx.get(f"{url}/readyz", headers=headers, timeout=10)
            if resp.status_code == 200:
                return
            last = resp.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout} s: {last}")


def server_side(url: str, token: str | None) -> dict[str, Any]:
    """What the store holds and the service's own mean retrieval/embedding time, from /status and /metrics."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status = httpx.get(f"{url}/status", headers=headers, timeout=60).json()
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=60).text

    def total(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))

    def mean_ms(prefix: str) -> float | None:
        count = total(f"{prefix}_count")
        return round(total(f"{prefix}_sum") / count * 1000, 1) if count else None

    return {
        "documents": status.get("documents"),
        "parents": status.get("parents"),
        "points": sum(status.get("collections", {}).values()),
        "qdrant": "server" if str(status.get("qdrant", "")).startswith("http") else "embedded",
        "mean_retrieval_ms": mean_ms("pipeline_retrieval_duration_seconds"),
        "mean_query_embedding_ms": mean_ms("pipeline_embedding_duration_seconds"),
    }


def render_table(results_dir: Path) -> str:
    rows = [
        "| results file | route | clients × seconds | store | requests | errors | throughput (req/s) | p50 ms | p95 ms | p99 ms | server mean retrieval ms | measured (UTC, 1-min load before) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # In the order they were measured: runs of one session alternate code versions on a shared machine.
    for path in sorted(results_dir.glob("*.json"), key=lambda p: json.loads(p.read_text())["measured_at"]):
        r = json.loads(path.read_text())
        srv = r.get("server", {})
        store = f"{srv.get('documents')} docs, {srv.get('parents')} parents, {srv.get('points')} points ({srv.get('qdrant')})"
        lat = r["latency_ms"]
        rows.append(
            f"| `{path.stem}` | `/{r['route']}` (mode {r['mode']}, top_k {r['top_k']}) | {r['clients']} × {r['duration_s']:g} | {store} | {r['requests']} "
            f"| {r['errors']} | {r['throughput_rps']} | {lat['p50']} | {lat['p95']} | {lat['p99']} | {srv.get('mean_retrieval_ms')} "
            f"| {r['measured_at'][:16].replace('T', ' ')}, {r['machine']['cpus']} CPUs, load {r['machine'].get('loadavg_1m_before')} |"
        )
    commands = [f"- `{path.name}`: `{json.loads(path.read_text())['command']}`" for path in sorted(results_dir.glob("*.json"))]
    return "\n".join([TABLE_BEGIN, *rows, "", "Commands:", "", *commands, TABLE_END])


def update_docs(docs: Path, results_dir: Path) -> None:
    text = docs.read_text()
    pattern = re.compile(re.escape(TABLE_BEGIN) + ".*?" + re.escape(TABLE_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{docs}: no {TABLE_BEGIN} ... {TABLE_END} markers")
    docs.write_text(pattern.sub(lambda _: render_table(results_dir), text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default="http://127.0.0.1:8000", help="a running service")
    target.add_argument("--spawn-store", type=Path, help="start the service on this store for the run, stop it after")
    parser.add_argument("--route", choices=["retrieve", "query"], default="retrieve")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of requests before measuring (not recorded)")
    parser.add_argument("--mode", default="all")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--token", default=os.environ.get("PIPELINE_API_TOKEN"), help="bearer token (default: $PIPELINE_API_TOKEN)")
    parser.add_argument("--out", type=Path, help="results file (JSON); printed only when omitted")
    parser.add_argument("--docs", type=Path, help="regenerate the results table in this markdown file from the --out folder")
    args = parser.parse_args()

    load_before = os.getloadavg()
    proc = None
    url = args.url
    if args.spawn_store:
        proc, url = spawn_service(args.spawn_store, ROOT / "benchmarks" / "results" / "tmp" / "load_test_service.log")
    try:
        wait_ready(url, args.token, proc)
        extra: dict[str, Any] = {"mode": args.mode, "top_k": args.top_k}
        result = asyncio.run(run_load(url, args.route, args.clients, args.duration, args.warmup, extra, args.token))
        server = server_side(url, args.token)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    report = {
        "route": args.route,
        "mode": args.mode,
        "top_k": args.top_k,
        "clients": args.clients,
        "duration_s": args.duration,
        **result,
        "server": server,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # 1-minute load average before the service started and right after the run: other work on the box
            "loadavg_1m_before": round(load_before[0], 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        },
        "command": " ".join(
            [*(f"{k}={v}" for k, v in os.environ.items() if k.startswith("PIPELINE_") and k != "PIPELINE_API_TOKEN"), "python benchmarks/load_test.py", *map(shlex.quote, sys.argv[1:])]
        ),
    }
    if args.token:  # never into a results file
        report["command"] = report["command"].replace(args.token, "$PIPELINE_API_TOKEN")
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        if args.docs:
            update_docs(args.docs, args.out.parent)
    print(text)


if __name__ == "__main__":
    main()
