"""Options the chapter leaves out: torch.compile and mixed precision run, learn, and log a plain model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient
from readback import only_run

from deep_learning.cli import cli
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.splits import load_splits
from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model
from deep_learning.core.precision import Autocast, grad_scaler, with_amp
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.training import train_and_evaluate


def test_compile_with_bf16_runs_learns_and_logs_the_plain_state_dict(store):
    # reduce-overhead: CUDA graphs on CUDA; on the CPU torch.compile runs it as its default mode.
    options = ["--compile", "true", "--compile-mode", "reduce-overhead", "--amp", "bf16"]
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--train-subset", "2000", *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    client = MlflowClient(store)
    run = only_run(client)
    params = run.data.params
    assert (params["compile"], params["compile_mode"], params["amp"]) == ("True", "reduce-overhead", "bf16")
    assert run.data.metrics["val_accuracy"] > 0.5
    with tempfile.TemporaryDirectory() as folder:
        state_dict = torch.load(Path(client.download_artifacts(run.info.run_id, "state_dict.pt", folder)), weights_only=True)
    assert set(state_dict) == set(build_model().state_dict())


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_learns_like_float32(data_root, amp):
    config = TrainConfig(train_subset=2000)
    device = torch.device("cpu")
    results = {}
    for mode in ("off", amp):
        train_dl, val_dl, _ = make_loaders(config, load_splits(config, data_root), device)
        set_seed(config.seed)
        model = build_model()
        history = train_and_evaluate(
            with_amp(model, device, mode),
            train_dl,
            val_dl,
            torch.nn.CrossEntropyLoss(),
            torch.optim.SGD(model.parameters(), lr=config.lr),
            accuracy_metric(),
            accuracy_metric(),
            num_epochs=1,
            device=device,
            grad_scaler=grad_scaler(device, mode),
        )
        results[mode] = history[0]
    assert results[amp].val_metric > 0.5
    assert abs(results[amp].val_metric - results["off"].val_metric) < 0.02


def test_autocast_wrapper_computes_in_low_precision_and_returns_float32():
    model = build_model()
    wrapped = with_amp(model, torch.device("cpu"), "bf16")
    assert isinstance(wrapped, Autocast) and with_amp(model, torch.device("cpu"), "off") is model
    captured = []
    model[1].register_forward_hook(lambda module, inputs, output: captured.append(output.dtype))
    assert wrapped(torch.rand(4, 1, 28, 28)).dtype == torch.float32
    assert captured == [torch.bfloat16]
