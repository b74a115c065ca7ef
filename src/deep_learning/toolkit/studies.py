"""`sweep` from Python: the CLI's `sweep` options by name, planned and run by the same code (a grid of settings,
seeds and devices, or an Optuna search), each point a child run of one parent."""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from typing import Any

from deep_learning.core.config import TrainConfig
from deep_learning.core.config_files import read_config_file
from deep_learning.core.interruption import signals_interrupt_runs
from deep_learning.core.progress import shows_progress
from deep_learning.studies.plan import new_sweep, resumed_sweep
from deep_learning.studies.search import SearchResult
from deep_learning.studies.sweep import StudyResult


def sweep(
    *,
    grid: Mapping[str, Sequence[Any]] | Sequence[str] = (),
    seeds: int | Sequence[int] | None = None,
    devices: str | Sequence[str] = "",
    vectorize: bool = False,
    search: str | None = None,
    trials: int | None = None,
    space: Mapping[str, str] | Sequence[str] = (),
    study_storage: str = "",
    config: str = "",
    resume: str = "",
    progress: bool | None = None,
    **settings: Any,
) -> StudyResult | SearchResult:
    """Train a study as child runs of one parent run and roll them up, as `deep-learning sweep` does.

    `grid`: values by setting ({"lr": [0.05, 0.1]}, or the CLI's "lr=0.05,0.1"); `seeds`: how many (from `seed`) or
    which; `devices`: "all", "cpu,cuda" or a list; `search="optuna"` searches `space` ({"lr": "loguniform:1e-3:1"})
    for `trials` trials instead. The base settings are TrainConfig's by name (over those of a `config` file);
    `resume=PARENT_ID` continues a sweep or search (a search may get more `trials`).
    """
    study = {
        "grid": _assignments(grid),
        "seeds": seeds if isinstance(seeds, int) else None,
        "seed_list": ",".join(map(str, seeds)) if seeds is not None and not isinstance(seeds, int) else "",
        "devices": devices if isinstance(devices, str) else ",".join(devices),
        "vectorize": vectorize,
        "search": search,
        "trials": trials,
        "space": _assignments(space),
        "study_storage": study_storage,
    }
    if resume:
        start = resumed_sweep(resume, study, bool(config or settings))
    else:
        start = new_sweep(TrainConfig(**{**(read_config_file(config) if config else {}), **settings}), study)
    # SIGTERM ends the current child and the parent KILLED, as Ctrl-C's KeyboardInterrupt does (see `fit`).
    with signals_interrupt_runs((signal.SIGTERM,)):
        return start(shows_progress(progress))


def _assignments(values: Mapping[str, Any] | Sequence[str]) -> tuple[str, ...]:
    """The CLI's NAME=... strings: a mapping's sequences joined with commas, its strings as they are."""
    if not isinstance(values, Mapping):
        return tuple(values)
    return tuple(f"{name}={value if isinstance(value, str) else ','.join(map(str, value))}" for name, value in values.items())
