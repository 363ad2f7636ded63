#!/usr/bin/env bash
# The GPU half of issue 7 in one go, for whoever has an NVIDIA GPU:
#   1. the gpu-marked tests (TensorRT and ORT CUDA/TensorRT EP parity on the tiny test bundles),
#   2. pixelrt bench --runtime trt,ort-cuda,ort-cuda-graph: us/step and ms/image at batch 1 and 64 for ref28
#      next to ORT CPU in the same run (its JSON goes into the table below),
#   3. scripts/gpu_check.py: one table with TRT FP32 (TF32 off) vs PyTorch, step-loop us/step at
#      batch 1 for ref28, summed sample log p vs the full log-likelihood, and the bench rows.
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
echo "== bench: GPU runtimes next to ORT CPU, ref28, batch 1 and 64 (pixelrt bench --runtime)"
BENCH_JSON=$(mktemp -t pixelrt-bench-XXXXXX.json)
trap 'rm -f "$BENCH_JSON"' EXIT
# host loops (ort, ort-cuda*) time 7 of 28 rows, scaled; the trt device loop always runs whole images
"$PY" -m pixelrt.cli bench --runtime trt,ort-cuda,ort-cuda-graph --batches 1,64 --rows 7 --json "$BENCH_JSON" \
  || echo "gpu_check: pixelrt bench --runtime failed (see above); the table below has no bench rows" >&2
echo "== measurements (ref28)"
"$PY" scripts/gpu_check.py --bench-json "$BENCH_JSON" "$@"
