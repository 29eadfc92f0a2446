#!/usr/bin/env bash
# Train the GPU presets (configs/train/gpu_*.yaml) for a fixed number of steps on the default
# dataset and time inference of every registered network; samples/s as a table, and
# gpu_check.json under $OUT when set. Without CUDA: one line saying so, then a CPU dry run.
#   scripts/gpu_check.sh [--dataset DATASET.h5] [--steps 200] [--batch 256] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[[ -x $python ]] || python=python3
exec "$python" scripts/gpu_check.py "$@"
