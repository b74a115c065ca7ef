"""The `deep-learning` command: a thin layer over the modules; torch and mlflow load only inside commands.

Each module holds a few commands (training, reading, models, tools); `options` what they share.
"""

from __future__ import annotations

import click

from deep_learning import __version__
from deep_learning.cli.models import evaluate, predict
from deep_learning.cli.reading import compare, devices, runs
from deep_learning.cli.tools import bench, data, sync
from deep_learning.cli.training import sweep, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deep-learning")
def cli() -> None:
    """Train PyTorch models reproducibly and track every run in MLflow."""


for command in (train, sweep, sync, bench, data, runs, compare, evaluate, predict, devices):
    cli.add_command(command)
