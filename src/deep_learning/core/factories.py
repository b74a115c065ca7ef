"""User code named on the command line: `package.module:factory` import paths, called with what they ask for."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

from deep_learning.core.errors import ConfigError, first_line


def is_import_path(name: str) -> bool:
    """True for `package.module:attribute`, the form that names user code (as LightningCLI's class paths do)."""
    module, _, attribute = name.partition(":")
    return bool(module) and bool(attribute) and all(part.isidentifier() for part in (*module.split("."), *attribute.split(".")))


def is_python_reference(name: str) -> bool:
    """True for `module:qualified.name` of an object that cannot be imported by name: a lambda, or a function or class
    defined inside a function (`module:build.<locals>.<lambda>`), as fit records a model it was handed."""
    module, _, attribute = name.partition(":")
    parts = attribute.split(".")
    return (
        bool(module)
        and bool(attribute)
        and all(part.isidentifier() or part in ("<lambda>", "<locals>") for part in parts)
        and not is_import_path(name)
    )


def import_object(path: str, what: str) -> Any:
    """The object an import path names; a ConfigError saying why when it cannot be had."""
    if not is_import_path(path):
        raise ConfigError(f"{what} {path!r} is not an import path of the form package.module:factory")
    module_name, _, attribute = path.partition(":")
    try:
        target = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module raises at import
        raise ConfigError(f"{what} {path!r} cannot be imported: {type(error).__name__}: {first_line(error)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{what} {path!r} cannot be imported: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{what} {path!r} is a {type(target).__name__}, not a function or class to call")
    return target


def call_factory(factory: Callable[..., Any], path: str, what: str, offered: dict[str, Any], given: dict[str, Any]) -> Any:
    """Call `factory` with the user's `given` arguments plus those of `offered` its signature names (or all, with **kwargs)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: offer nothing it did not ask for
        parameters = []
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)
    named = {parameter.name for parameter in parameters}
    arguments = {name: value for name, value in offered.items() if takes_any or name in named} | given
    try:
        return factory(**arguments)
    except Exception as error:
        raise ConfigError(f"{what} {path!r} raised {type(error).__name__}: {first_line(error)}") from None


def parse_assignments(assignments: Iterable[str], what: str) -> dict[str, Any]:
    """`key=value` strings as a dict, each value parsed as JSON where it parses (`4`, `0.5`, `true`, `[1, 2]`), else a string."""
    parsed: dict[str, Any] = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        key = key.strip()
        if not separator or not key.isidentifier():
            raise ConfigError(f"{what} must be given as key=value with a Python name for the key, not {assignment!r}")
        try:
            parsed[key] = json.loads(text)
        except ValueError:
            parsed[key] = text
    return parsed
