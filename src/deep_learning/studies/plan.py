"""What `sweep` runs, planned from its options before any run starts: a grid study or a search, new or resumed from
its parent run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deep_learning.core.config import ALL_DEVICES, TrainConfig
from deep_learning.core.errors import InputError

DEFAULT_TRIALS = 20


def new_sweep(base: TrainConfig, study: dict[str, Any]) -> Callable[[bool], Any]:
    """What `sweep` runs: a grid study, or a search; every point or the space checked before any run starts."""
    from deep_learning.studies.grid import Study, parse_devices, parse_grid, parse_seeds

    if base.device.strip().lower() == ALL_DEVICES:
        raise InputError("A sweep's devices are --devices (all, or a list); --device is for one run.")
    if study["search"]:
        if study["grid"] or study["seeds"] or study["seed_list"] or study["devices"] or study["vectorize"]:
            raise InputError("A search varies its --param settings: --grid, --seeds, --devices and --vectorize are for a grid sweep.")
        from deep_learning.studies.search import parse_space, run_search

        space, trials, storage = parse_space(study["space"]), study["trials"] or DEFAULT_TRIALS, study["study_storage"] or None
        return lambda progress: run_search(base, space, trials, storage=storage, progress=progress)
    if study["space"] or study["trials"]:
        raise InputError("--param and --trials are for a search: add --search optuna.")
    from deep_learning.core.devices import available_devices
    from deep_learning.studies.sweep import run_study

    chosen = parse_devices(study["devices"] or base.device, available_devices())
    points = Study(base, parse_grid(study["grid"]), parse_seeds(study["seeds"], study["seed_list"], base.seed), chosen, study["vectorize"])
    points.points()
    return lambda progress: run_study(points, progress=progress)


def resumed_sweep(parent_run_id: str, study: dict[str, Any], settings_given: bool) -> Callable[[bool], Any]:
    """What `sweep --resume` runs: the sweep or search its parent run holds (a search may get more --trials)."""
    from deep_learning import tracking
    from deep_learning.analysis.records import KIND_TAG, SEARCH, SEARCH_TAG
    from deep_learning.studies.sweep import resumed_study, run_study

    if settings_given or any(value for name, value in study.items() if name != "trials"):
        raise InputError("--resume continues a sweep as it was started: give --resume PARENT_ID alone (a search's also takes --trials N).")
    parent = tracking.get_run(parent_run_id)
    if parent.tags.get(KIND_TAG) == SEARCH:
        from deep_learning.studies.search import resumed_search, run_search

        base, space, storage, trials = resumed_search(parent.tags[SEARCH_TAG])
        trials = study["trials"] or trials
        return lambda progress: run_search(base, space, trials, storage=storage, resume=parent_run_id, progress=progress)
    if study["trials"]:
        raise InputError("--trials is for a search: this sweep's --resume takes no other option.")
    points = resumed_study(parent_run_id)
    return lambda progress: run_study(points, resume=parent_run_id, progress=progress)
