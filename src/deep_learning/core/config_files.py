"""Settings read from a YAML or TOML file, by TrainConfig field name (`--config`, and a run's logged config.yaml)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deep_learning.core.config import TrainConfig
from deep_learning.core.errors import ConfigError, first_line


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings a YAML or TOML file holds, by TrainConfig field name (a run's logged config.yaml reads back)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            import tomllib

            settings = tomllib.loads(text)
        else:
            import yaml

            settings = yaml.safe_load(text) or {}
    except (OSError, ValueError, ImportError) as error:  # yaml's and tomllib's errors are ValueErrors
        raise ConfigError(f"Cannot read config file {path}: {first_line(error)}") from None
    except Exception as error:  # yaml.YAMLError
        raise ConfigError(f"{path} is not a YAML or TOML file of settings: {first_line(error)}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{path} holds a {type(settings).__name__}, not settings by name (key: value).")
    unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"{path} has settings no run knows: {', '.join(unknown)} (`deep-learning train --help` lists them).")
    return settings
