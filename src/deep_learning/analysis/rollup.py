"""A study's roll-up: for each group of runs that differ only in seed, the spread of every metric (final and per
epoch), and for each configuration each device's group against the CPU's (Welch's 95% interval of the difference)
and each device's runs against the CPU's of the same seed (their largest difference).

Plain data in, plain data out: runs come as RunRecords with their histories, so this module needs neither
torch nor mlflow (scipy gives Student's t quantile).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from deep_learning.analysis.display import frame_html
from deep_learning.analysis.records import RunRecord, largest_difference
from deep_learning.analysis.tables import markdown_table

if TYPE_CHECKING:
    import pandas

CONFIDENCE = 0.95
WITHIN_NOISE, DIFFERS, TOO_FEW = "within seed noise", "differs", "too few seeds"
STATS = ("mean", "std", "min", "max", "n")


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (n-1; NaN for one value), min, max and n of some values."""

    mean: float
    std: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        return cls(statistics.fmean(values), std, min(values), max(values), len(values))


@dataclass(frozen=True)
class GroupRollup:
    """The runs of one group (same settings and device, seeds apart) and the spread of each metric."""

    group: str
    configuration: str
    device: str
    run_ids: list[str]
    final: dict[str, Spread]  # each metric's last logged value, over the runs
    epochs: dict[str, dict[int, Spread]]  # each metric's value at each epoch, over the runs that reached it


@dataclass(frozen=True)
class DeviceVerdict:
    """One device's group against the reference device's, for one configuration and metric."""

    configuration: str
    metric: str
    device: str
    reference: str
    difference: float  # mean on `device` minus mean on `reference`
    low: float
    high: float
    verdict: str


@dataclass(frozen=True)
class SeedDifference:
    """One device's runs against the reference device's runs of the same seed, for one configuration and metric.

    A seed's difference is the largest absolute per-epoch difference of the metric, as `compare` reports it
    (max_abs_diff), or for a metric that has no history on both runs (a test metric) that of the final values.
    """

    configuration: str
    metric: str
    device: str
    reference: str
    largest: float  # over the seeds
    per_seed: dict[int, float]  # each seed both devices ran, and its difference


def roll_up(members: Sequence[tuple[str, str, str, RunRecord]], keys: Sequence[str]) -> list[GroupRollup]:
    """Group (group, configuration, device, run) members by group, in their order, and summarise each of `keys`."""
    grouped: dict[str, list[tuple[str, str, RunRecord]]] = {}
    for group, configuration, device, run in members:
        grouped.setdefault(group, []).append((configuration, device, run))
    rollups = []
    for group, runs in grouped.items():
        records = [run for _, _, run in runs]
        final = {
            key: Spread.of([run.metrics[key] for run in records if key in run.metrics])
            for key in keys
            if any(key in run.metrics for run in records)
        }
        epochs = {
            key: _per_epoch([run.histories.get(key, {}) for run in records])
            for key in keys
            if any(run.histories.get(key) for run in records)
        }
        rollups.append(GroupRollup(group, runs[0][0], runs[0][1], [run.run_id for run in records], final, epochs))
    return rollups


def _per_epoch(histories: list[dict[int, float]]) -> dict[int, Spread]:
    steps = sorted({step for history in histories for step in history})
    return {step: Spread.of([history[step] for history in histories if step in history]) for step in steps}


def welch_interval(a: Spread, b: Spread, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """The difference of means a - b and its Welch confidence interval (low, high); NaN bounds with fewer than 2 values each."""
    difference = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return difference, math.nan, math.nan
    variance_a, variance_b = a.std**2 / a.n, b.std**2 / b.n
    standard_error = math.sqrt(variance_a + variance_b)
    if standard_error == 0:  # every seed gave the same value on both sides
        return difference, difference, difference
    freedom = standard_error**4 / (variance_a**2 / (a.n - 1) + variance_b**2 / (b.n - 1))
    from scipy.stats import t

    half_width = t.ppf(0.5 + confidence / 2, freedom) * standard_error
    return difference, difference - half_width, difference + half_width


def verdict_of(low: float, high: float) -> str:
    """Within seed noise when the interval holds 0, else differs."""
    if math.isnan(low):
        return TOO_FEW
    return WITHIN_NOISE if low <= 0 <= high else DIFFERS


def device_verdicts(rollups: Sequence[GroupRollup], keys: Sequence[str]) -> list[DeviceVerdict]:
    """For each configuration, each device's group against the CPU's (else the first device's), for each final metric."""
    verdicts = []
    by_configuration: dict[str, list[GroupRollup]] = {}
    for rollup in rollups:
        by_configuration.setdefault(rollup.configuration, []).append(rollup)
    for configuration, groups in by_configuration.items():
        reference = next((group for group in groups if group.device == "cpu"), groups[0])
        for group in groups:
            if group is reference:
                continue
            for key in keys:
                if key in group.final and key in reference.final:
                    difference, low, high = welch_interval(group.final[key], reference.final[key])
                    verdicts.append(
                        DeviceVerdict(configuration, key, group.device, reference.device, difference, low, high, verdict_of(low, high))
                    )
    return verdicts


def seed_differences(members: Sequence[tuple[str, str, int, RunRecord]], keys: Sequence[str]) -> list[SeedDifference]:
    """For each configuration on more than one device, each device's (configuration, device, seed, run) members
    against the CPU's (else the first device's) of the same seed: one row per device and metric of `keys`."""
    runs: dict[str, dict[str, dict[int, RunRecord]]] = {}  # configuration -> device -> seed -> run
    for configuration, device, seed, run in members:
        runs.setdefault(configuration, {}).setdefault(device, {})[seed] = run
    differences = []
    for configuration, devices in runs.items():
        reference = "cpu" if "cpu" in devices else next(iter(devices))
        for device, seeds in devices.items():
            if device == reference:
                continue
            pairs = {seed: (run, devices[reference][seed]) for seed, run in seeds.items() if seed in devices[reference]}
            for key in keys:
                per_seed = {seed: value for seed, pair in pairs.items() if (value := seed_difference(*pair, key)) is not None}
                if per_seed:
                    differences.append(SeedDifference(configuration, key, device, reference, max(per_seed.values()), per_seed))
    return differences


def seed_difference(run: RunRecord, reference: RunRecord, key: str) -> float | None:
    """The largest absolute per-epoch difference where both runs hold a history of `key`, else that of their final values."""
    if run.histories.get(key) and reference.histories.get(key):
        return largest_difference(run.histories[key], reference.histories[key])
    if key in run.metrics and key in reference.metrics:
        return abs(run.metrics[key] - reference.metrics[key])
    return None


def metric_key(group: str, key: str, stat: str) -> str:
    """A roll-up's metric name on the parent run: the group (its label, `=` as `_`; none for a sweep of seeds alone,
    whose one group has no label), then the metric and the statistic."""
    prefix = f"{group.replace('=', '_')}/" if group else ""
    return f"{prefix}{key}_{stat}"


def parent_metrics(rollups: Sequence[GroupRollup]) -> list[tuple[str, float, int]]:
    """(key, value, step) of every statistic of every group: per epoch at step = epoch, test metrics at the last epoch."""
    rows = []
    for rollup in rollups:
        last = max((step for series in rollup.epochs.values() for step in series), default=0)
        for key, series in rollup.epochs.items():
            rows += [
                (metric_key(rollup.group, key, stat), float(getattr(spread, stat)), step)
                for step, spread in series.items()
                for stat in STATS
            ]
        for key, spread in rollup.final.items():
            if key not in rollup.epochs:
                rows += [(metric_key(rollup.group, key, stat), float(getattr(spread, stat)), last) for stat in STATS]
    return [(key, value, step) for key, value, step in rows if not math.isnan(value)]


def to_csv(rollups: Sequence[GroupRollup]) -> str:
    """One row per group and final metric: group, configuration, device, metric, mean, std, min, max, n."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["group", "configuration", "device", "metric", *STATS])
    for rollup in rollups:
        for key, spread in rollup.final.items():
            writer.writerow([rollup.group, rollup.configuration, rollup.device, key, *(getattr(spread, stat) for stat in STATS)])
    return buffer.getvalue()


def to_markdown(rollups: Sequence[GroupRollup], verdicts: Sequence[DeviceVerdict], differences: Sequence[SeedDifference] = ()) -> str:
    """The final metrics' spread per group, then the device verdicts, then the same-seed differences."""
    tables = [
        markdown_table(
            ["group", "metric", "mean", "std", "min", "max", "n"],
            [
                [rollup.group, key, f"{spread.mean:.4f}", f"{spread.std:.4f}", f"{spread.min:.4f}", f"{spread.max:.4f}", str(spread.n)]
                for rollup in rollups
                for key, spread in rollup.final.items()
            ],
        )
    ]
    if verdicts:
        header = ["configuration", "metric", "device - reference", "difference", f"{CONFIDENCE:.0%} interval", "verdict"]
        rows = [
            [
                v.configuration or "(base)",
                v.metric,
                f"{v.device} - {v.reference}",
                f"{v.difference:+.4f}",
                f"[{v.low:+.4f}, {v.high:+.4f}]",
                v.verdict,
            ]
            for v in verdicts
        ]
        tables.append(markdown_table(header, rows))
    if differences:
        header = ["configuration", "metric", "device - reference", "largest same-seed difference", "per seed"]
        rows = [
            [d.configuration or "(base)", d.metric, f"{d.device} - {d.reference}", _shown(d.largest), _per_seed(d.per_seed)]
            for d in differences
        ]
        tables.append(markdown_table(header, rows))
    return "\n".join(tables)


def _per_seed(differences: dict[int, float]) -> str:
    return ", ".join(f"seed {seed}: {_shown(value)}" for seed, value in differences.items())


def _shown(difference: float) -> str:
    return "0" if difference == 0 else f"{difference:.2e}"


def to_json(rollups: Sequence[GroupRollup], verdicts: Sequence[DeviceVerdict], differences: Sequence[SeedDifference] = ()) -> str:
    """Everything: each group's final and per-epoch spreads, the verdicts and the same-seed differences."""
    record = {
        "groups": [asdict(rollup) for rollup in rollups],
        "verdicts": [asdict(verdict) for verdict in verdicts],
        "seed_differences": [asdict(difference) for difference in differences],
    }
    return json.dumps(record, indent=2, default=str)


@dataclass(frozen=True)
class RollupReport:
    """A sweep's roll-up as its parent run logs it: rollup.md's tables, and rollup.csv's rows."""

    run_id: str
    markdown: str
    table: str  # rollup.csv: one row per group and final metric

    def __str__(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        return f"<p>Roll-up of sweep {self.run_id}</p>" + frame_html(self.to_pandas())

    def to_pandas(self) -> pandas.DataFrame:
        """One row per group and final metric: group, configuration, device, metric, mean, std, min, max, n."""
        import pandas

        return pandas.read_csv(io.StringIO(self.table))
