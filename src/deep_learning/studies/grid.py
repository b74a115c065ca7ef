"""A study's points: the cross product of a grid of config fields, seeds and devices, each a checked TrainConfig
with a label that says what sets it apart (`lr=0.05 seed=3 cuda`).

No torch or mlflow here: a grid that names an unknown field or a value the config refuses is one line
before any run starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deep_learning.core.config import ALL_DEVICES, TrainConfig, field_value, option_name
from deep_learning.core.errors import ConfigError

FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}
# Settings whose per-seed behaviour a batched model does not reproduce: a norm or a loss scale shared by all seeds,
# a stop that comes at a different epoch for each, a compiled or profiled or per-step-logged loop.
NOT_VECTORIZED = {
    "grad_clip_norm": "the gradient norm is each seed's own",
    "early_stopping_patience": "each seed would stop at its own epoch",
    "restore_best": "each seed has its own best epoch",
    "compile": "the batched model is not compiled",
    "profile": "profile one run instead",
    "log_every_n_steps": "per-step metrics are logged by separate runs only",
}
NOT_IN_A_GRID = {
    "seed",
    "device",
    "checkpoint_dir",
    "register_model",
}  # --seeds and --devices say these; the others are not settings of a point


@dataclass(frozen=True)
class Point:
    """One training run of a study: its config, and what sets it apart from the others."""

    config: TrainConfig
    settings: dict[str, Any]  # the grid's values for this point
    show_device: bool  # whether the study trains on more than the one device

    @property
    def configuration(self) -> str:
        """The grid's values, as `lr=0.05 batch_size=32`: the points that train the same thing, on any device."""
        return " ".join(f"{name}={_spelled(value)}" for name, value in self.settings.items())

    @property
    def group(self) -> str:
        """The configuration and the device: the points that differ only in seed."""
        return " ".join(filter(None, [self.configuration, self.config.device if self.show_device else ""]))

    @property
    def label(self) -> str:
        """The group and the seed, as `lr=0.05 seed=3 cuda`: what names the point's run."""
        return " ".join(filter(None, [self.configuration, f"seed={self.config.seed}", self.config.device if self.show_device else ""]))


@dataclass(frozen=True)
class Study:
    """What a sweep trains: a base config, a grid of other values, seeds and devices; with `vectorize`, each group's seeds together."""

    base: TrainConfig
    grid: dict[str, list[Any]]
    seeds: list[int]
    devices: list[str]
    vectorize: bool = False

    def points(self) -> list[Point]:
        """Every combination, in a stable order (grid, then device, then seed), each checked by TrainConfig."""
        names = list(self.grid)
        points = []
        for values in itertools.product(*self.grid.values()):
            settings = dict(zip(names, values))
            for device in self.devices:
                for seed in self.seeds:
                    config = _config(self.base, {**settings, "seed": seed, "device": device})
                    if self.vectorize:
                        check_vectorizable(config)
                    points.append(Point(config, settings, show_device=len(self.devices) > 1 or device != TrainConfig.device))
        return points

    def to_json(self) -> str:
        """The study as the parent run keeps it (a resumed sweep reads it back)."""
        return json.dumps(
            {"base": self.base.to_params(), "grid": self.grid, "seeds": self.seeds, "devices": self.devices, "vectorize": self.vectorize},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Study:
        record = json.loads(text)
        return cls(TrainConfig(**record["base"]), record["grid"], record["seeds"], record["devices"], record.get("vectorize", False))


def check_vectorizable(config: TrainConfig) -> None:
    """Refuse, in one line, a config whose seeds a batched model would not train as separate runs do."""
    if config.amp == "fp16":
        raise ConfigError("--vectorize does not train with --amp fp16 (one loss scale for all seeds): use --amp bf16 or off.")
    for name, why in NOT_VECTORIZED.items():
        if getattr(config, name) != getattr(TrainConfig, name):
            raise ConfigError(f"--vectorize cannot be combined with {option_name(name)} ({why}): sweep without --vectorize.")


def parse_grid(assignments: Sequence[str]) -> dict[str, list[Any]]:
    """`--grid NAME=V1,V2,...` options (or several in one, space-separated) as field name to typed values, each field once."""
    grid: dict[str, list[Any]] = {}
    for assignment in (part for given in assignments for part in given.split()):  # the MLproject passes them space-separated
        name, equals, values = assignment.partition("=")
        name = name.strip().replace("-", "_").removeprefix("__")
        if not equals or not values.strip():
            raise ConfigError(f"--grid takes NAME=V1,V2,... (a config field and its values), not {assignment!r}")
        if name not in FIELDS or name in NOT_IN_A_GRID:
            hint = " (--seeds and --devices set those)" if name in ("seed", "device") else ""
            raise ConfigError(
                f"--grid names {name!r}, which is not a setting a sweep can vary{hint}: `deep-learning train --help` lists them."
            )
        if name in grid:
            raise ConfigError(f"--grid names {name} twice: give all its values in one --grid {name}=V1,V2")
        grid[name] = [_typed(name, value.strip()) for value in values.split(",")]
    return grid


def parse_seeds(count: int | None, listed: str | None, default: int) -> list[int]:
    """The seeds: --seed-list 1,2,3, else --seeds N (default, default+1, ...), else the base seed alone."""
    if listed:
        try:
            seeds = [int(seed) for seed in listed.split(",")]
        except ValueError:
            raise ConfigError(f"--seed-list takes whole numbers separated by commas, not {listed!r}") from None
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seed-list names a seed twice: {listed}")
        return seeds
    if count is not None and count < 1:
        raise ConfigError(f"--seeds must be 1 or more, not {count}")
    return [default + offset for offset in range(count or 1)]


def parse_devices(devices: str, available: Sequence[str]) -> list[str]:
    """--devices all (every device here) or a comma-separated list."""
    if devices.strip().lower() == ALL_DEVICES:
        return list(available)
    return [device.strip() for device in devices.split(",") if device.strip()]


def _typed(name: str, text: str) -> Any:
    kind = type(FIELDS[name].default)
    try:
        return field_value(name, text)
    except ValueError:
        raise ConfigError(
            f"--grid {name}: {text!r} is not a{'n' if kind is int else ''} {kind.__name__} ({option_name(name)} takes one)"
        ) from None


def _config(base: TrainConfig, changes: dict[str, Any]) -> TrainConfig:
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as error:
        shown = ", ".join(f"{name}={value}" for name, value in changes.items() if name != "device")
        raise ConfigError(f"The sweep's point {shown} is not a valid config: {error}") from None


def _spelled(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
