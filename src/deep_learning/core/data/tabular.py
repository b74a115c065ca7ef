"""Tabular data: `--dataset csv:FILE --target COLUMN`. Every other column is a numeric feature; the target is a class
label (text or whole numbers), or, with `--task regression`, numbers (several comma-separated columns: several
outputs). Rows are split at random by `--split-seed` into training, validation and test (`--val-fraction` each,
0.1 by default).

The features are standardised with the training split's mean and standard deviation inside the model (`Standardized`),
so the logged model, `predict` and `mlflow models serve` all take the raw columns; the statistics are also in the run's
`data_spec.json`. A regression's targets are standardised the same way: the model gives its outputs back in the targets'
units, its metrics (mse, mae, r2) are in those units, and its loss is the mean squared error of standardised targets.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.utils.data as utils
from torch import Tensor

from deep_learning.core.data.found import DEFAULT_VAL_FRACTION, Found
from deep_learning.core.errors import ConfigError, DataError, first_line

CSV = "csv:"


@dataclass(frozen=True)
class Table:
    """A csv file's feature columns and target columns, as text, in file order."""

    path: Path
    feature_names: list[str]
    target_names: list[str]
    features: list[list[str]]  # per row
    targets: list[list[str]]  # per row


def read_table(path: Path, target: str) -> Table:
    """The file's rows split into features and the `target` columns (comma-separated names); a one-line error for a file
    that is missing, empty, or lacks a target column."""
    if not target.strip():
        raise ConfigError(f"--dataset csv:{path} needs --target COLUMN: the column to predict")
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [row for row in csv.reader(file) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"Cannot read {path} as a csv file: {first_line(error)}") from None
    if len(rows) < 2:
        raise DataError(f"{path} has {'no header' if not rows else 'a header but no rows'}: a csv dataset needs a header row and data rows")
    header, rows = [name.strip() for name in rows[0]], rows[1:]
    targets = [name.strip() for name in target.split(",") if name.strip()]
    missing = [name for name in targets if name not in header]
    if missing:
        raise DataError(f"{path} has no column {missing[0]!r} (its columns: {', '.join(header)}): name the column to predict with --target")
    for number, row in enumerate(rows, 2):
        if len(row) != len(header):
            raise DataError(f"line {number} of {path} has {len(row)} values, not one per column of the header ({len(header)})")
    feature_names = [name for name in header if name not in targets]
    if not feature_names:
        raise DataError(f"{path} has no column besides the target: a csv dataset needs feature columns")
    positions = {name: header.index(name) for name in header}
    return Table(
        path,
        feature_names,
        targets,
        [[row[positions[name]] for name in feature_names] for row in rows],
        [[row[positions[name]] for name in targets] for row in rows],
    )


def _numbers(table: Table, columns: list[list[str]], names: list[str], what: str) -> Tensor:
    """Columns of text as float32 numbers, or a one-line error naming the first cell that is not one."""
    values = torch.empty(len(columns), len(names), dtype=torch.float32)
    for row_index, row in enumerate(columns):
        for column, text in enumerate(row):
            try:
                values[row_index, column] = float(text)
            except ValueError:
                raise DataError(
                    f"column {names[column]!r} of {table.path} holds {text.strip()!r} (line {row_index + 2}), not a number: {what}"
                ) from None
    return values


def _class_labels(table: Table) -> tuple[Tensor, tuple[str, ...]]:
    """One target column's labels as class indices, the classes sorted (by value where all are whole numbers)."""
    if len(table.target_names) != 1:
        raise ConfigError(
            f"--target {','.join(table.target_names)}: a classification has one target column (several need --task regression)"
        )
    labels = [row[0].strip() for row in table.targets]
    whole = all(_is_whole(label) for label in labels)
    if not whole and all(_is_number(label) for label in labels):
        raise DataError(
            f"the target column {table.target_names[0]!r} of {table.path} holds numbers that are not class labels "
            f"({next(label for label in labels if not _is_whole(label))!r}): give --task regression to predict them"
        )
    classes = tuple(sorted(set(labels), key=lambda label: (float(label), label) if whole else (0, label)))
    index = {name: position for position, name in enumerate(classes)}
    return torch.tensor([index[label] for label in labels], dtype=torch.int64), classes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_whole(text: str) -> bool:
    return _is_number(text) and float(text).is_integer()


def csv_splits(dataset: str, target: str, task: str, val_fraction: float, split_seed: int) -> Found:
    """The file's rows as training, validation and test TensorDatasets of raw features and targets (see the module)."""
    path = Path(dataset.removeprefix(CSV)).expanduser()
    if not path.is_file():
        raise DataError(f"{path} is not a file: --dataset csv:FILE names a csv file with a header row")
    table = read_table(path, target)
    features = _numbers(table, table.features, table.feature_names, "the features must be numbers (drop or encode that column)")
    regression = task == "regression"
    if task not in ("auto", "classification", "regression"):
        raise ConfigError(
            f"--task {task} does not fit a csv dataset: its targets are a class label (classification) or numbers (regression)"
        )
    if regression:
        targets, classes = _numbers(table, table.targets, table.target_names, "--task regression needs numbers in the target column"), ()
    else:
        targets, classes = _class_labels(table)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(split_seed))
    held_out = max(round(len(features) * (val_fraction or DEFAULT_VAL_FRACTION)), 1)
    if len(features) - 2 * held_out < 1:
        raise DataError(f"{path} has {len(features)} rows: too few to hold out {held_out} for validation and {held_out} for test")
    parts = [order[: len(order) - 2 * held_out], order[len(order) - 2 * held_out : len(order) - held_out], order[len(order) - held_out :]]
    train, val, test = (utils.TensorDataset(features[part], targets[part]) for part in parts)
    statistics = {"names": table.feature_names, **_statistics(features[parts[0]]), "target_names": table.target_names}
    if regression:
        target_statistics = _statistics(targets[parts[0]])
        statistics |= {"target_mean": target_statistics["mean"], "target_std": target_statistics["std"]}
    return Found(train, val, test, classes, str(path.absolute()), "regression" if regression else "classification", statistics)


def _statistics(columns: Tensor) -> dict[str, list[float]]:
    """Each column's mean and standard deviation (1 where a column is constant)."""
    std = columns.std(dim=0, correction=0)
    return {"mean": columns.mean(dim=0).tolist(), "std": torch.where(std > 0, std, torch.ones_like(std)).tolist()}


class Standardized(nn.Module):
    """A model of standardised features that takes the raw ones, (features - mean) / std; for a regression, its outputs
    are standardised targets, given back in the targets' own units: output * target_std + target_mean."""

    def __init__(self, model: nn.Module, statistics: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(statistics["mean"], dtype=torch.float32))
        self.register_buffer("std", torch.tensor(statistics["std"], dtype=torch.float32))
        self.regression = "target_mean" in statistics
        if self.regression:
            self.register_buffer("target_mean", torch.tensor(statistics["target_mean"], dtype=torch.float32))
            self.register_buffer("target_std", torch.tensor(statistics["target_std"], dtype=torch.float32))

    def forward(self, features: Tensor) -> Any:
        output = self.model((features - self.mean) / self.std)
        return output * self.target_std + self.target_mean if self.regression else output


class StandardizedMSE(nn.Module):
    """The mean squared error of standardised targets: a regression's loss in the targets' own units divided by each
    target's variance, so that one learning rate suits targets of any scale (the metrics stay in the targets' units)."""

    def __init__(self, target_std: list[float]) -> None:
        super().__init__()
        self.register_buffer("target_std", torch.tensor(target_std, dtype=torch.float32))

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return ((output - target.to(output.dtype)) / self.target_std).pow(2).mean()


def read_rows(path: Path, features: dict[str, Any]) -> tuple[list[str], Tensor]:
    """The rows of a csv file to predict: a run's feature columns by name (other columns, such as the target, are
    ignored), as raw float32 features; each row named `FILE:LINE`."""
    header_names = features["names"]
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [row for row in csv.reader(file) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"Cannot read {path} as a csv file: {first_line(error)}") from None
    if not rows:
        raise DataError(f"{path} is empty: give a csv file with a header row and rows to predict")
    header = [name.strip() for name in rows[0]]
    missing = [name for name in header_names if name not in header]
    if missing:
        raise DataError(f"{path} has no column {missing[0]!r}: the model takes the columns {', '.join(header_names)}")
    table = Table(path, header_names, [], [[row[header.index(name)] for name in header_names] for row in rows[1:]], [])
    return [f"{path}:{line}" for line in range(2, len(rows) + 1)], _numbers(
        table, table.features, header_names, "the features must be numbers"
    )
