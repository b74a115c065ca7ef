"""Hyperparameter search with Optuna: every trial a child run of one parent, pruned by its per-epoch monitored
metric (a median pruner), the best params and value on the parent; the study lives in a storage beside the
tracking store, so a stopped search resumes where it was.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from deep_learning import tracking
from deep_learning.analysis.listing import RunList
from deep_learning.analysis.records import KIND_TAG, SEARCH, SEARCH_TAG
from deep_learning.core.callbacks import Callback
from deep_learning.core.config import TrainConfig, field_value
from deep_learning.core.errors import ConfigError, InputError
from deep_learning.core.monitoring import monitor_direction
from deep_learning.core.results import EpochResult
from deep_learning.experiment.recipe import run_name_for
from deep_learning.studies.grid import FIELDS, NOT_IN_A_GRID
from deep_learning.studies.parent import parent_run

if TYPE_CHECKING:
    import pandas

KINDS = ("uniform", "loguniform", "int", "choice")
STARTUP_TRIALS = 2  # the median pruner prunes nothing before this many trials have finished
TRIAL_TAG, TRIAL_STATE_TAG = "deep_learning.trial", "deep_learning.trial_state"
BEST_VALUE = "best_value"


@dataclass(frozen=True)
class Dimension:
    """One searched setting: `lr=loguniform:1e-3:1`, `dropout=uniform:0:0.5`, `width=int:16:128`, `batch_size=choice:32,64`."""

    name: str
    kind: str
    bounds: tuple[Any, ...]

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.bounds))
        if self.kind == "int":
            return trial.suggest_int(self.name, *self.bounds)
        return trial.suggest_float(self.name, *self.bounds, log=self.kind == "loguniform")


def parse_space(params: Sequence[str]) -> list[Dimension]:
    """`--param NAME=KIND:...` options as dimensions, each checked against the config field it names."""
    dimensions = []
    for param in params:
        name, _, spec = param.partition("=")
        kind, _, rest = spec.partition(":")
        name = name.strip()
        if name not in FIELDS or name in NOT_IN_A_GRID:
            raise ConfigError(f"--param names {name!r}, which is not a setting a search can vary: `deep-learning train --help` lists them.")
        if kind not in KINDS or not rest:
            raise ConfigError(
                f"--param {param!r} does not parse: give NAME=uniform:LOW:HIGH, loguniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,..."
            )
        dimensions.append(Dimension(name, kind, _bounds(param, name, kind, rest)))
    if not dimensions:
        raise ConfigError("A search needs at least one --param NAME=KIND:...")
    return dimensions


def _bounds(param: str, name: str, kind: str, rest: str) -> tuple[Any, ...]:
    try:
        if kind == "choice":
            return tuple(field_value(name, value) for value in rest.split(","))
        low, high = (int(value) if kind == "int" else float(value) for value in rest.split(":"))
    except ValueError:
        expected = f"{type(FIELDS[name].default).__name__} values" if kind == "choice" else "integers" if kind == "int" else "numbers"
        raise ConfigError(f"--param {param!r} does not parse: its values are not {expected} (or not two bounds)") from None
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(f"--param {param!r}: the bounds must be LOW < HIGH{' and above 0' if kind == 'loguniform' else ''}")
    return low, high


def default_storage() -> str:
    """Optuna's storage beside a local sqlite tracking store (optuna.db in its folder), else ./optuna.db."""
    parts = urlsplit(tracking.tracking_uri())
    folder = Path(unquote(parts.path[1:])).parent if parts.scheme == "sqlite" and len(parts.path) > 1 else Path.cwd()
    return f"sqlite:///{folder / 'optuna.db'}"


def resumed_search(record: str) -> tuple[TrainConfig, list[Dimension], str, int]:
    """The base config, space, storage and number of trials a search's parent run holds."""
    search = json.loads(record)
    space = [Dimension(d["name"], d["kind"], tuple(d["bounds"])) for d in search["space"]]
    return TrainConfig(**search["base"]), space, search["storage"], search["trials"]


@dataclass(frozen=True)
class SearchResult:
    run_id: str
    best_params: dict[str, Any]
    best_value: float
    trials: int
    where_to_look: str

    def summary(self) -> str:
        return (
            f"Search {self.run_id} finished: {self.trials} trials; best {json.dumps(self.best_params)} with value {self.best_value:.6g}; "
            f"to browse it: {self.where_to_look}"
        )

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary())}</p>" + self.trial_runs()._repr_html_()

    def trial_runs(self) -> RunList:
        """The search's trials as runs (their settings and final metrics), oldest first."""
        return RunList(f"search {self.run_id}", tuple(tracking.child_runs(self.run_id, histories=("epoch_seconds",))))

    def to_pandas(self) -> pandas.DataFrame:
        """One row per trial run: run_id, run_name, status, ..., params.<name> and metrics.<name>."""
        return self.trial_runs().to_pandas()


def run_search(
    base: TrainConfig,
    space: list[Dimension],
    trials: int,
    *,
    storage: str | None = None,
    resume: str | None = None,
    data_root: str | Path | None = None,
    progress: bool = False,
) -> SearchResult:
    """Run Optuna trials of `space` over `base` until the study holds `trials` finished ones, as child runs of one parent."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if monitor_direction(base.monitor, base.monitor_mode) == "min" else "maximize"
    storage = storage or default_storage()
    record = json.dumps({"base": base.to_params(), "space": [dataclasses.asdict(d) for d in space], "storage": storage, "trials": trials})
    params = {**base.to_params(), "search_space": json.dumps([f"{d.name}={d.kind}:{d.bounds}" for d in space])}
    with parent_run(run_name_for(base.model, base.dataset, "search"), params, {KIND_TAG: SEARCH, SEARCH_TAG: record}, resume) as parent:
        study = _study(optuna, parent.run_id, storage, direction, base.seed)
        while _finished(study) < trials:
            _trial(study, base, space, parent.run_id, data_root, progress)
        best = study.best_trial
        parent.log_metric_rows([(BEST_VALUE, best.value, len(study.trials))])
        parent.set_tags({f"best.{key}": str(value) for key, value in best.params.items()} | {"deep_learning.best_trial": str(best.number)})
    return SearchResult(parent.run_id, best.params, best.value, _finished(study), parent.where_to_look())


def _study(optuna, name: str, storage: str, direction: str, seed: int):
    """The study named after the parent run (loaded when it exists); a trial left running by an interruption is failed."""
    sampler_seed = seed
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        for trial in existing.trials:
            if trial.state == optuna.trial.TrialState.RUNNING:
                existing.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        sampler_seed = seed + len(existing.trials)  # new trials, not the first ones' draws again
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction=direction,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS),
    )


def _finished(study) -> int:
    import optuna

    return sum(trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for trial in study.trials)


@dataclass
class Pruning(Callback):
    """Reports each epoch's monitored metric to an Optuna trial, and stops training when the pruner says so."""

    trial: Any
    monitor: str

    def on_epoch_end(self, result: EpochResult) -> None:
        self.trial.report(result.learning_metrics()[self.monitor], result.epoch)

    def should_stop(self) -> bool:
        return self.trial.should_prune()


def _trial(study, base: TrainConfig, space: list[Dimension], parent_run_id: str, data_root, progress: bool) -> None:
    """One trial: suggest its settings, train them as a child run reporting each epoch, tell the study how it ended."""
    import optuna

    from deep_learning.experiment.runner import run_experiment

    trial = study.ask()
    settings = {dimension.name: dimension.suggest(trial) for dimension in space}
    label = f"trial {trial.number}: " + " ".join(
        f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}" for name, value in settings.items()
    )
    try:
        config = dataclasses.replace(base, **settings)
    except ConfigError as error:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise InputError(f"Trial {trial.number}'s settings are not a valid config ({error}): narrow the --param ranges.") from None
    print(label, flush=True)

    try:
        result = run_experiment(
            config,
            data_root,
            parent_run_id=parent_run_id,
            progress=progress,
            run_name=label,
            tags={TRIAL_TAG: str(trial.number)},
            callbacks=[Pruning(trial, base.monitor)],
        )
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    if len(result.history) < config.epochs and trial.should_prune():
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        tracking.end_pruned(result.run_id, TRIAL_STATE_TAG, f"pruned by the median pruner after epoch {result.history[-1].epoch}")
        return
    study.tell(trial, result.history[-1].learning_metrics()[base.monitor])
    tracking.set_run_tags(result.run_id, {TRIAL_STATE_TAG: "COMPLETE"})
