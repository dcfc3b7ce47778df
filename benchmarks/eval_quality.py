"""Quality runs for docs/quality.md: every dataset × the configured LLM → benchmarks/results/quality/*.json.

The LLM, fusion and other settings come from the environment as usual (PIPELINE_LLM__MODEL=...,
PIPELINE_RETRIEVAL__FUSION=rrf, ...); ``--tag`` names the variant in the file name. Each run goes
through ``EvalRunner`` exactly as ``python -m pipeline eval`` does, with the same isolated stores
(``<store>/eval/<dataset>-<fingerprint>``), so a second run re-uses the ingested data.

    nice -n 10 .venv/bin/python benchmarks/eval_quality.py --datasets paul_graham_essay,blockchain_solana
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Quality runs measure the metadata modes too: enrich whatever the LLM (ingest.enrich=auto skips SmolLM2).
os.environ.setdefault("PIPELINE_INGEST__ENRICH", "now")

from pipeline.config import Settings  # noqa: E402
from pipeline.eval.datasets import load_dataset  # noqa: E402
from pipeline.eval.run import EvalRunner, describe  # noqa: E402
from pipeline.models import Mode  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "llama_datasets"
DATASETS = ("paul_graham_essay", "blockchain_solana", "history_of_alexnet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--modes", default="base,chunk,metadata,all")
    ap.add_argument("--top-k", default="2,10")
    ap.add_argument("--store", type=Path, default=ROOT / "storage")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality")
    ap.add_argument("--tag", default="", help="variant name added to the file name, e.g. rrf")
    ap.add_argument("--eval-store-fp", default="", help="use stores <store>/eval/<dataset>-<FP> as they are, no ingest (retrieval-only variants)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings(store=args.store)
    modes = [Mode(m) for m in args.modes.split(",")]
    ks = [int(k) for k in args.top_k.split(",")]
    cfg = describe(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.datasets.split(","):
        dataset = load_dataset(CORPUS / name)
        last = [0.0]

        def progress(event: str, detail: dict) -> None:
            if event == "parent" and time.time() - last[0] > 30:
                last[0] = time.time()
                logging.info("%s: ingest %d/%d parents", name, detail["done"], detail["total"])

        store = args.store / "eval" / f"{name}-{args.eval_store_fp}" if args.eval_store_fp else None
        report = EvalRunner(settings, modes=modes, ks=ks, store=store, progress=progress, ingest=store is None).run(dataset)
        parts = [name, cfg["llm"].replace("/", "_")] + ([args.tag] if args.tag else [])
        path = args.out / ("__".join(parts) + ".json")
        data = report.to_json()
        if store is not None and path.exists():  # retrieval-only re-run: keep the figures of the real ingest
            old = json.loads(path.read_text())
            if old.get("store") == data.get("store") and old.get("ingest", {}).get("parents"):
                data["ingest"] = old["ingest"]
        path.write_text(json.dumps(data, indent=2) + "\n")
        print(json.dumps({"file": str(path), **{m: r.flat() for m, r in report.results.items()}}), flush=True)


if __name__ == "__main__":
    main()
