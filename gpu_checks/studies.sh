#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, from the repository root, with the package installed: a 5-seed sweep of the
# chapter's config on the CPU and CUDA (the roll-up and the device verdict), then 32 seeds with --vectorize on
# CUDA timed against one run. The store and the timings go to $OUT (default: ./studies-out). Non-zero exit on failure.
set -euo pipefail

MNIST_RAW="${MNIST_RAW:-data/MNIST/raw}"  # the four raw MNIST .gz files, as `deep-learning data import` takes them
OUT="${OUT:-studies-out}"
EPOCHS="${EPOCHS:-5}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export MLFLOW_TRACKING_URI="sqlite:///$OUT/mlflow.db" DEEP_LEARNING_DATA_ROOT="$OUT/data" DEEP_LEARNING_OFFLINE=1

python -c 'import torch; assert torch.cuda.is_available(), "no CUDA device here"; print("GPU:", torch.cuda.get_device_name())'
deep-learning data import "$MNIST_RAW" >/dev/null

# The roll-up and the verdict: is CUDA within seed noise of the CPU?
(cd "$OUT" && deep-learning sweep --seeds 5 --devices cpu,cuda --epochs "$EPOCHS" -q) | tee "$OUT/sweep.md"

# 32 seeds trained together on CUDA against one run of the same config.
elapsed() { local TIMEFORMAT=%R; { time "$@" >/dev/null 2>&1; } 2>&1; }  # wall seconds of a command
one=$(cd "$OUT" && elapsed deep-learning train --device cuda --epochs "$EPOCHS" -q)
together=$(cd "$OUT" && elapsed deep-learning sweep --devices cuda --seeds 32 --vectorize --epochs "$EPOCHS" -q)
python -c "print(f'one run on cuda: $one s; 32 seeds with --vectorize: $together s; ratio {$together / $one:.2f}')" | tee "$OUT/vectorize.txt"
