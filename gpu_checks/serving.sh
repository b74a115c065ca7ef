#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, from the repository root, with the package installed: train a run on the CPU,
# then, with no device setting, load its logged model through MLflow's pyfunc (and a pickled fallback model, which
# MLflow moves to the GPU) and serve it with `mlflow models serve`. Prints what it finds; non-zero exit on failure.
set -euo pipefail

MNIST_RAW="${MNIST_RAW:-data/MNIST/raw}"  # the four raw MNIST .gz files, as `deep-learning data import` takes them

work="$(mktemp -d)"
server=""
trap '[[ -n "$server" ]] && kill -- "-$server" 2>/dev/null; rm -rf "$work"' EXIT
unset MLFLOW_DEFAULT_PREDICTION_DEVICE MLFLOW_PYFUNC_INFERENCE_CONFIG
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db" DEEP_LEARNING_DATA_ROOT="$work/data" DEEP_LEARNING_OFFLINE=1

python -c 'import torch; assert torch.cuda.is_available(), "no CUDA device here"; print("GPU:", torch.cuda.get_device_name())'
deep-learning data import "$MNIST_RAW" >/dev/null
deep-learning train --epochs 1 --train-subset 2000 --device cpu | tee "$work/train.log"
RUN_ID="$(grep -oE 'MLflow run [0-9a-f]{32}' "$work/train.log" | head -n 1 | cut -d' ' -f3)"
export RUN_ID

python - <<'PY'
import os

import mlflow
import torch
import torch.nn as nn

import deep_learning
from deep_learning.core.data.samples import as_tensors
from deep_learning.core.data.files import load_dataset

inputs, labels = as_tensors(load_dataset("mnist", train=False))
inputs, labels = inputs[:256].numpy(), labels[:256].numpy()
model = mlflow.pyfunc.load_model(f"runs:/{os.environ['RUN_ID']}/model")
devices = {tensor.device.type for tensor in model.get_raw_model().parameters()}
accuracy = (model.predict(inputs).argmax(1) == labels).mean()
print(f"pt2 model: pyfunc loaded it, parameters on {devices}, accuracy {accuracy:.3f} on 256 test images")
assert devices == {"cpu"} and accuracy > 0.5


class DataDependent(nn.Module):
    """torch.export cannot trace it, so it is logged in MLflow's pickle format."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(32, 3)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.linear(batch.flatten(1))
        return logits * 2 if batch.mean() > 0.5 else logits


data = torch.utils.data.TensorDataset(torch.rand(24, 2, 4, 4), torch.arange(24) % 3)
run = deep_learning.fit(DataDependent(), data, data, epochs=1, device="cpu")
pickled = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
devices = {tensor.device.type for tensor in pickled.get_raw_model().parameters()}
shape = pickled.predict(data.tensors[0].numpy()).shape
print(f"pickled model: pyfunc loaded it, parameters on {devices}, predictions of shape {shape}")
assert devices == {"cuda"} and shape == (24, 3)
PY

PORT="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export PORT
setsid mlflow models serve -m "runs:/$RUN_ID/model" --env-manager local --host 127.0.0.1 --port "$PORT" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 240); do
  python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "http://127.0.0.1:$PORT/ping" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.5
done

python - <<'PY' || { echo "serve.log:"; tail -n 40 "$work/serve.log"; exit 1; }
import json
import os
import urllib.request

import mlflow
import numpy as np

from deep_learning.core.data.samples import as_tensors
from deep_learning.core.data.files import load_dataset

inputs, labels = as_tensors(load_dataset("mnist", train=False))
inputs, labels = inputs[:64].numpy(), labels[:64].numpy()
request = urllib.request.Request(
    f"http://127.0.0.1:{os.environ['PORT']}/invocations",
    data=json.dumps({"inputs": inputs.tolist()}).encode(), headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=60) as response:
    served = np.asarray(json.loads(response.read())["predictions"]).argmax(1)
expected = mlflow.pyfunc.load_model(f"runs:/{os.environ['RUN_ID']}/model").predict(inputs).argmax(1)
print(f"mlflow models serve: /invocations answered, {(served == expected).mean():.3f} agree with pyfunc, accuracy {(served == labels).mean():.3f}")
assert (served == expected).all() and (served == labels).mean() > 0.5
PY
echo "serving checks passed"
