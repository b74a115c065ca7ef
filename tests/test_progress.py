"""Progress: a tqdm bar rewritten in place on a terminal, the chapter's epoch lines elsewhere, only the final line with --quiet."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import termios
import time

import pytest
import torch
import torch.utils.data as utils
from conftest import subprocess_env

from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model
from deep_learning.core.progress import REFRESH_SECONDS, TrainingProgress
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.training import train_and_evaluate

TINY = ("train", "--epochs", "1", "--train-subset", "640", "--device", "cpu")
PROGRESS_LINE = re.compile(r"Epoch (\d+)/(\d+) \|[^|]*\| (\d+)/(\d+) batches, ([\d,]+|-) samples/s, loss (\d+\.\d{4})")
EPOCH_LINE = re.compile(r"^Epoch \[\d+/\d+\] \| loss: ", re.MULTILINE)
FINAL_LINE = re.compile(r"^Run [0-9a-f]{32} finished; to browse it: .+$")


def _loaders(num_samples: int):
    generator = torch.Generator().manual_seed(0)
    dataset = utils.TensorDataset(
        torch.rand(num_samples, 1, 28, 28, generator=generator), torch.randint(0, 10, (num_samples,), generator=generator)
    )
    return utils.DataLoader(dataset, batch_size=16, shuffle=True), utils.DataLoader(dataset, batch_size=128)


def test_the_line_is_refreshed_at_the_first_batch_then_at_most_every_half_second_and_cleared(capsys, monkeypatch):
    train_dl, val_dl = _loaders(3200)
    screen = io.StringIO()
    progress = TrainingProgress(len(train_dl), first_epoch=1, num_epochs=2, stream=screen)
    reads = []
    original_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda tensor: reads.append(tensor.shape) or original_item(tensor))
    set_seed(0)
    model = build_model()
    started = time.perf_counter()
    history = train_and_evaluate(
        model,
        train_dl,
        val_dl,
        torch.nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        accuracy_metric(),
        accuracy_metric(),
        num_epochs=2,
        device=torch.device("cpu"),
        callbacks=[progress],
    )
    seconds = time.perf_counter() - started
    monkeypatch.undo()

    written = screen.getvalue()
    shown = [match for match in PROGRESS_LINE.finditer(written)]
    assert [match.group(1, 2, 3, 4) for match in shown if match.group(3) == "1"] == [("1", "2", "1", "200"), ("2", "2", "1", "200")]
    assert all(int(match.group(3)) < 200 for match in shown)  # the last batch clears the bar instead
    assert len(shown) <= 2 + seconds / REFRESH_SECONDS  # never once per batch: 400 batches ran
    assert written.split("\r")[-2].strip() == "" and written.endswith("\r")  # cleared: the epoch line prints in its place
    # One read of the running loss per refresh, beside the loop's fixed handful per epoch (loss, metric, sampler seed).
    assert len(reads) <= len(shown) + 8 * len(history)
    assert float(shown[0].group(6)) == pytest.approx(history[0].train_loss, abs=0.5)
    assert capsys.readouterr().out.count("Epoch [") == 2


def _on_a_terminal(args: tuple[str, ...], stderr_path) -> str:
    """Run `deep-learning ARGS` with stdout on a pseudo-terminal of 120 columns; return what it showed there."""
    controller, terminal = pty.openpty()
    termios.tcsetwinsize(terminal, (40, 120))
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "deep_learning", *args], stdin=subprocess.DEVNULL, stdout=terminal, stderr=stderr, env=subprocess_env()
        )
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.wait(timeout=600) == 0, stderr_path.read_text()[-3000:]
    return shown.decode().replace("\r\n", "\n")


def _left_on_screen(shown: str) -> list[str]:
    """The lines a terminal keeps once the output is done: on each, what the last carriage return let stand."""
    return [line.split("\r")[-1] for line in shown.rstrip("\n").split("\n")]


def test_a_terminal_shows_the_progress_line_then_the_epoch_lines_in_its_place(module_store, tmp_path):
    shown = _on_a_terminal(TINY, tmp_path / "stderr")
    assert PROGRESS_LINE.search(shown) and re.search(r"\r {40,}\r", shown), repr(shown)  # a bar, then cleared
    start, epoch, test, final = _left_on_screen(shown)
    assert start.startswith("MLflow run ") and EPOCH_LINE.match(epoch) and test.startswith("Test | loss: ") and FINAL_LINE.match(final), (
        shown
    )


def test_a_pipe_gets_the_epoch_lines_without_progress(module_store):
    result = subprocess.run(
        [sys.executable, "-m", "deep_learning", *TINY], capture_output=True, text=True, env=subprocess_env(), timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(EPOCH_LINE.findall(result.stdout)) == 1 and "Test | loss: " in result.stdout
    assert not PROGRESS_LINE.search(result.stdout + result.stderr) and "\r" not in result.stdout and "\x1b" not in result.stdout
    assert FINAL_LINE.match(result.stdout.splitlines()[-1]), result.stdout


def test_quiet_shows_only_the_final_line_even_on_a_terminal(module_store, tmp_path):
    shown = _on_a_terminal((*TINY, "--quiet"), tmp_path / "stderr")
    assert shown.splitlines() == [shown.strip()] and FINAL_LINE.match(shown.strip()), repr(shown)
    assert "Epoch" not in (tmp_path / "stderr").read_text()
