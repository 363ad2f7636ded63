#!/usr/bin/env bash
# The GPU half of issue 7 in one go, for whoever has an NVIDIA GPU:
#   1. the gpu-marked tests (TensorRT and ORT CUDA/TensorRT EP parity on the tiny test bundles),
#   2. scripts/gpu_check.py: one table with TRT FP32 (TF32 off) vs PyTorch, step-loop us/step at
#      batch 1 for ref28, and summed sample log p vs the full log-likelihood.
# Usage: scripts/gpu_check.sh [--json out.json]     (from the repository root; uses .venv if present)
# Setup: make test (creates .venv), then: .venv/bin/pip uninstall -y onnxruntime && .venv/bin/pip install -e ".[gpu]"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi -L failed); nothing to check here" >&2
  exit 2
fi
nvidia-smi -L
"$PY" -m pixelrt.cli doctor --help >/dev/null  # the package imports
echo "== gpu-marked tests"
"$PY" -m pytest -q -m gpu -rs tests/runtime/test_trt_gpu.py tests/runtime/test_gpu.py
echo "== measurements (ref28)"
"$PY" scripts/gpu_check.py "$@"
