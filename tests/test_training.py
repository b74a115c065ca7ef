"""The loop reads the device once per epoch, reports each epoch to its callback, and returns the history."""

from __future__ import annotations

import torch
import torch.utils.data as utils

from deep_learning.core.callbacks import Callback
from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model, count_parameters
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.results import EpochResult
from deep_learning.core.training import evaluate, train, train_and_evaluate


def _synthetic_loaders(num_samples: int = 640):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(num_samples, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (num_samples,), generator=generator)
    dataset = utils.TensorDataset(images, labels)
    return utils.DataLoader(dataset, batch_size=64, shuffle=True), utils.DataLoader(dataset, batch_size=128)


def test_model_is_the_chapters_mlp():
    model = build_model("mlp")
    assert count_parameters(model) == 784 * 128 + 128 + 128 * 10 + 10
    assert build_model()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def _item_calls(monkeypatch, num_samples: int) -> int:
    train_dl, val_dl = _synthetic_loaders(num_samples)
    set_seed(0)
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    original_item = torch.Tensor.item

    def counting_item(tensor):
        calls.append(tuple(tensor.shape))
        return original_item(tensor)

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "item", counting_item)
        train(model, train_dl, torch.nn.CrossEntropyLoss(), optimizer, accuracy_metric(), torch.device("cpu"))
        evaluate(model, val_dl, torch.nn.CrossEntropyLoss(), accuracy_metric(), torch.device("cpu"))
    return len(calls)


def test_no_host_sync_per_batch(monkeypatch):
    few, many = _item_calls(monkeypatch, 640), _item_calls(monkeypatch, 6400)
    assert few == many <= 8  # a fixed handful per epoch (loss, metric, sampler seed), none per batch


class Recorder(Callback):
    def __init__(self, stop_after: int | None = None) -> None:
        self.epochs: list[EpochResult] = []
        self.batches = 0
        self.stop_after = stop_after

    def on_batch_end(self, loss: torch.Tensor, num_samples: int) -> None:
        self.batches += 1

    def on_epoch_end(self, result: EpochResult) -> None:
        self.epochs.append(result)

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.epochs) >= self.stop_after


def test_callback_gets_every_batch_and_epoch_and_history_is_returned(capsys):
    train_dl, val_dl = _synthetic_loaders()
    set_seed(0)
    model = build_model()
    seen = Recorder()
    history = train_and_evaluate(
        model,
        train_dl,
        val_dl,
        torch.nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        accuracy_metric(),
        accuracy_metric(),
        num_epochs=3,
        device=torch.device("cpu"),
        callbacks=[seen],
    )
    assert seen.epochs == history
    assert seen.batches == 3 * len(train_dl)
    assert [result.epoch for result in history] == [1, 2, 3]
    assert all(result.num_epochs == 3 and result.num_train_samples == 640 for result in history)
    assert all(0 < result.train_seconds <= result.epoch_seconds for result in history)
    assert capsys.readouterr().out.count("Epoch [") == 3


def test_device_defaults_to_the_chapters_choice(capsys):
    train_dl, val_dl = _synthetic_loaders(128)
    model = build_model()
    history = train_and_evaluate(
        model,
        train_dl,
        val_dl,
        torch.nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        accuracy_metric(),
        accuracy_metric(),
        num_epochs=1,
    )
    assert len(history) == 1
    assert "Epoch [1/1]" in capsys.readouterr().out
    chapters_choice = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else torch.device("cpu")
    assert {parameter.device.type for parameter in model.parameters()} == {chapters_choice.type}  # the loop moved the model there


def test_a_callback_that_says_stop_ends_training_after_that_epoch(capsys):
    train_dl, val_dl = _synthetic_loaders()
    set_seed(0)
    model = build_model()
    quiet, stopping = Recorder(), Recorder(stop_after=2)
    history = train_and_evaluate(
        model,
        train_dl,
        val_dl,
        torch.nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        accuracy_metric(),
        accuracy_metric(),
        num_epochs=5,
        device=torch.device("cpu"),
        callbacks=[quiet, stopping],
    )
    assert [result.epoch for result in history] == [1, 2]
    assert quiet.epochs == stopping.epochs == history  # every callback sees the last epoch before training stops
    assert capsys.readouterr().out.count("Epoch [") == 2
