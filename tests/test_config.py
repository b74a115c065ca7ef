"""One set of names: TrainConfig fields, CLI options and MLproject parameters agree."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import REPO

from deep_learning.cli import cli
from deep_learning.core.config import TrainConfig, field_value, option_name
from deep_learning.core.errors import ConfigError

FIELDS = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
# Which run to continue, and which file to read settings from: options and MLproject parameters, not hyperparameters.
RUN_CONTROL = {"resume": "", "config": ""}
# How `train` prints, not what a run computes: options of the CLI only, neither config fields nor MLproject parameters.
CLI_ONLY = {"quiet": False}


def _mlproject_main() -> dict:
    return yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]["main"]


def test_cli_options_are_the_config_fields_with_their_defaults():
    options = {param.name: param for param in cli.commands["train"].params if param.name != "help"}
    assert set(options) == set(FIELDS) | set(RUN_CONTROL) | set(CLI_ONLY)
    for name, default in {**FIELDS, **RUN_CONTROL, **CLI_ONLY}.items():
        # A repeatable option (--model-arg k=v ...) collects a tuple; none given is the field's empty default.
        assert options[name].default == (() if options[name].multiple else default), name
        assert not options[name].multiple or default == "", name
        assert option_name(name) in options[name].opts


def test_mlproject_parameters_are_the_config_fields_with_their_defaults():
    main = _mlproject_main()
    assert set(main["parameters"]) == set(FIELDS) | set(RUN_CONTROL)
    for name, default in {**FIELDS, **RUN_CONTROL}.items():
        declared = main["parameters"][name]["default"]
        assert str(declared).lower() == str(default).lower(), name
        assert f"{option_name(name)} {{{name}}}" in main["command"], name


def test_mlproject_types_match_the_config():
    types = {bool: "string", int: "int", float: "float", str: "string"}
    for name, spec in _mlproject_main()["parameters"].items():
        assert spec["type"] == types[type({**FIELDS, **RUN_CONTROL}[name])], name


def test_config_params_are_every_field():
    assert TrainConfig().to_params() == FIELDS


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"epochs": -1}, "epochs must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"lr": 0.0}, "lr must be a finite number above 0"),
        ({"lr": -1.0}, "lr must be a finite number above 0"),
        ({"lr": float("nan")}, "lr must be a finite number above 0"),
        ({"dataset": "nope"}, "dataset must be one of mnist, fashion-mnist"),
        ({"train_subset": -5}, "train_subset must be 0"),
        ({"compile": True, "compile_mode": "fast"}, "compile_mode must be one of default, reduce-overhead, max-autotune"),
        ({"compile_mode": "reduce-overhead"}, "compile_mode 'reduce-overhead' needs compile true"),
    ],
)
def test_invalid_values_are_refused_with_what_is_expected(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("compile", "yes", True),
        ("compile", "False", False),
        ("epochs", "3", 3),
        ("epochs", "3.0", 3),
        ("lr", "0.05", 0.05),
        ("amp", "bf16", "bf16"),
    ],
)
def test_a_field_value_is_read_from_text_as_its_type(name, text, value):
    read = field_value(name, text)
    assert read == value and type(read) is type(value)


@pytest.mark.parametrize(("name", "text"), [("compile", "maybe"), ("epochs", "2.5"), ("epochs", "two"), ("lr", "fast")])
def test_text_that_is_not_a_value_of_the_field_type_is_refused(name, text):
    with pytest.raises(ValueError):
        field_value(name, text)
