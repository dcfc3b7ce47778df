#!/usr/bin/env bash
# Issue 10's ablation: every retrieval stage (dense, hybrid, +rerank) per embedder on the dev sets and
# mini_squadv2, LLM off, one eval process at a time (2 cores). Writes benchmarks/results/stages/ and the
# offline fusion sweep benchmarks/results/tuning/hybrid.json; then run benchmarks/render_docs.py.
#   nice -n 10 bash benchmarks/eval_stages.sh [STORE_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-storage}
DATA=../shared/corpus/llama_datasets
OUT=benchmarks/results/stages
mkdir -p "$OUT"
export PIPELINE_LLM__PROVIDER=none PIPELINE_INGEST__ENRICH=false
for emb in minilm bge-small; do
  pairs=()
  for ds in history_of_alexnet blockchain_solana paul_graham_essay mini_squadv2; do
    PIPELINE_EMBED__MODEL=$emb .venv/bin/python -m pipeline eval "$DATA/$ds" --store "$ROOT" --modes chunk \
      --variants dense,hybrid,dense+rerank,hybrid+rerank --top-k 2,10 --out "$OUT/${ds}__${emb}.json" --json > /dev/null
    pairs+=("$DATA/$ds" "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['store'])" "$OUT/${ds}__${emb}.json")")
  done
  PIPELINE_EMBED__MODEL=$emb .venv/bin/python benchmarks/tune_hybrid.py "${pairs[@]}" --rerank-n 10 --out benchmarks/results/tuning/hybrid.json
done
