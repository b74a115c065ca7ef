"""The chapter's code runs against the package, and the package's loop gives the chapter's numbers."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from contextlib import redirect_stdout

import chapter_listing
import pytest
import torch
import torch.utils.data as utils
from click.testing import CliRunner
from conftest import CHAPTER, subprocess_env
from torchmetrics.classification import MulticlassAccuracy

import deep_learning
from deep_learning.cli import cli
from deep_learning.core.data.files import chapter_transform, load_dataset
from deep_learning.core.data.splits import split_train_val

EPOCH_LINE = re.compile(r"Epoch \[\s*(\d+)/(\d+)\] \| loss: ([\d.]+) \| metric: ([\d.]+) \| val_loss: ([\d.]+) \| val_metric: ([\d.]+)")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_listing_is_the_chapters_code_in_order():
    chapter = _squash(CHAPTER.read_text())
    position = 0
    for block in chapter_listing.SCRIPT:
        found = chapter.find(_squash(block), position)
        assert found >= 0, block[:80]
        position = found


def _run_chapter(data_root, **options) -> list[tuple[float, ...]]:
    result = subprocess.run(
        [sys.executable, "-c", chapter_listing.script(**options)],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(DEEP_LEARNING_DATA_ROOT=str(data_root)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using device: cpu" in result.stdout
    return [tuple(float(value) for value in match.groups()) for match in EPOCH_LINE.finditer(result.stdout)]


@pytest.fixture(scope="module")
def chapter_as_printed(data_root):
    return _run_chapter(data_root)


def test_chapter_runs_as_printed_and_learns(chapter_as_printed):
    assert [int(epoch) for epoch, *_ in chapter_as_printed] == [1, 2, 3, 4, 5]
    losses = [line[2] for line in chapter_as_printed]
    assert losses == sorted(losses, reverse=True)
    assert chapter_as_printed[-1][5] > 0.95


def test_chapter_with_the_packages_definitions_prints_the_same_first_epoch(data_root, chapter_as_printed):
    with_package = _run_chapter(data_root, own_definitions=False, num_epochs=1)
    assert len(with_package) == 1
    assert with_package[0][2:] == chapter_as_printed[0][2:]


def _chapter_namespace() -> dict:
    namespace: dict = {}
    exec(chapter_listing.IMPORTS.replace("print(", "(") + "\n".join(chapter_listing.DEFINITIONS.values()), namespace)
    return namespace


def _package_functions() -> dict:
    return {name: getattr(deep_learning, name) for name in chapter_listing.DEFINITIONS}


def _loaders(data_root, subset: int):
    train_ds, val_ds = split_train_val(load_dataset("mnist", train=True, root=data_root, transform=chapter_transform()))
    train_dl = utils.DataLoader(utils.Subset(train_ds, range(subset)), batch_size=64, shuffle=True)
    val_dl = utils.DataLoader(utils.Subset(val_ds, range(subset)), batch_size=128, shuffle=False)
    return train_dl, val_dl


def _one_epoch(functions: dict, train_dl, val_dl) -> tuple[tuple[float, float], tuple[float, float], dict]:
    functions["set_seed"](42)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    device = torch.device("cpu")
    trained = functions["train"](model, train_dl, loss_fn, optimizer, MulticlassAccuracy(num_classes=10), device)
    evaluated = functions["evaluate"](model, val_dl, loss_fn, MulticlassAccuracy(num_classes=10), device)
    return trained, evaluated, model.state_dict()


def test_train_and_evaluate_match_the_chapter(data_root):
    train_dl, val_dl = _loaders(data_root, subset=3000)
    chapter = _one_epoch(_chapter_namespace(), train_dl, val_dl)
    package = _one_epoch(_package_functions(), train_dl, val_dl)
    for ours, theirs in zip(package[0] + package[1], chapter[0] + chapter[1]):
        assert ours == pytest.approx(theirs, abs=1e-6)
    for key, tensor in chapter[2].items():
        assert torch.equal(package[2][key], tensor)


def test_train_and_evaluate_prints_the_chapters_lines_and_returns_history(data_root):
    train_dl, val_dl = _loaders(data_root, subset=2000)
    outputs, results = [], []
    for functions in (_chapter_namespace(), _package_functions()):
        functions["set_seed"](42)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        stdout = io.StringIO()
        with redirect_stdout(stdout):
            results.append(
                functions["train_and_evaluate"](
                    model=model,
                    train_dl=train_dl,
                    val_dl=val_dl,
                    loss_fn=torch.nn.CrossEntropyLoss(),
                    optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                    metric=MulticlassAccuracy(num_classes=10),
                    val_metric=MulticlassAccuracy(num_classes=10),
                    num_epochs=2,
                    device=torch.device("cpu"),
                )
            )
        outputs.append(stdout.getvalue())
    assert outputs[0] == outputs[1]
    history = results[1]
    assert [result.epoch for result in history] == [1, 2]
    assert all(result.num_train_samples == 2000 and result.train_samples_per_second > 0 for result in history)


def test_the_cli_reproduces_the_chapters_run(store, chapter_as_printed):
    result = CliRunner().invoke(cli, ["train", "--epochs", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ours = [tuple(float(value) for value in match.groups()) for match in EPOCH_LINE.finditer(result.output)]
    assert len(ours) == 2
    for epoch, chapter_epoch in zip(ours, chapter_as_printed):
        assert (epoch[2], epoch[4]) == (chapter_epoch[2], chapter_epoch[4])  # losses; accuracies average differently
