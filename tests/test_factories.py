"""User code by import path: which names are paths, what importing them says when it fails, and what factories get."""

from __future__ import annotations

import pytest

from deep_learning.core.errors import ConfigError
from deep_learning.core.factories import call_factory, import_object, is_import_path, parse_assignments


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("user_models:tiny_cnn", True),
        ("pkg.mod:Class.build", True),
        ("mlp", False),
        (":f", False),
        ("pkg:", False),
        ("pkg-x:f", False),
        ("pkg:f()", False),
    ],
)
def test_an_import_path_is_dotted_names_on_both_sides_of_one_colon(name, expected):
    assert is_import_path(name) is expected


def test_assignments_parse_values_as_json_where_they_parse_else_as_strings():
    parsed = parse_assignments(
        ["dim=64", " rate =0.5", "flag=true", "channels=[8, 16]", "optimizer=adam", "text=a=b", "empty="], "--model-arg"
    )
    assert parsed == {"dim": 64, "rate": 0.5, "flag": True, "channels": [8, 16], "optimizer": "adam", "text": "a=b", "empty": ""}
    assert parse_assignments(["dim=64", "dim=32"], "--model-arg") == {"dim": 32}


@pytest.mark.parametrize("assignment", ["dim", "=64", "1dim=64", "my-dim=64"])
def test_an_assignment_without_a_python_name_and_an_equals_sign_is_refused(assignment):
    with pytest.raises(ConfigError, match=f"--model-arg must be given as key=value with a Python name for the key, not '{assignment}'"):
        parse_assignments([assignment], "--model-arg")


def test_an_import_path_names_its_object():
    import user_models

    assert import_object("user_models:tiny_cnn", "model") is user_models.tiny_cnn


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tiny_cnn", "model 'tiny_cnn' is not an import path of the form package.module:factory"),
        ("no_such_module:f", "model 'no_such_module:f' cannot be imported: ModuleNotFoundError: No module named 'no_such_module'"),
        ("user_models:missing", "model 'user_models:missing' cannot be imported: module 'user_models' has no attribute 'missing'"),
        ("user_models:DEFAULT_WIDTH", "model 'user_models:DEFAULT_WIDTH' is a int, not a function or class to call"),
    ],
)
def test_an_import_path_that_names_nothing_to_call_is_refused_in_one_line(path, message):
    with pytest.raises(ConfigError) as caught:
        import_object(path, "model")
    assert str(caught.value) == message


def test_a_module_that_raises_on_import_is_refused_with_its_first_line(tmp_path, monkeypatch):
    (tmp_path / "broken_models.py").write_text('raise RuntimeError("no GPU here\\nmore detail")\n')
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(ConfigError) as caught:
        import_object("broken_models:model", "model")
    assert str(caught.value) == "model 'broken_models:model' cannot be imported: RuntimeError: no GPU here"


def test_a_factory_gets_the_offers_its_signature_names_and_every_given_argument():
    def named(num_classes, width=1):
        return num_classes, width

    def keywords(**arguments):
        return arguments

    offered = {"num_classes": 10, "input_shape": (1, 28, 28)}
    assert call_factory(named, "m:named", "model", offered, {"width": 4}) == (10, 4)
    assert call_factory(keywords, "m:keywords", "model", offered, {"num_classes": 3}) == {"num_classes": 3, "input_shape": (1, 28, 28)}
    assert call_factory(dict, "builtins:dict", "model", offered, {"a": 1}) == {"a": 1}  # no signature: offered nothing


def test_a_factory_that_raises_is_refused_with_its_first_line():
    import user_models

    with pytest.raises(ConfigError) as caught:
        call_factory(user_models.raises, "user_models:raises", "model", {}, {})
    assert str(caught.value) == "model 'user_models:raises' raised ValueError: bad width"
