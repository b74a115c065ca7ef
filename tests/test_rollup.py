"""The roll-up's statistics and verdicts against numpy and scipy, its same-seed differences by hand, and a study's points and labels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from deep_learning.analysis.records import RunRecord
from deep_learning.analysis.rollup import (
    DIFFERS,
    TOO_FEW,
    WITHIN_NOISE,
    SeedDifference,
    Spread,
    device_verdicts,
    parent_metrics,
    roll_up,
    seed_differences,
    to_json,
    to_markdown,
    verdict_of,
    welch_interval,
)
from deep_learning.core.config import TrainConfig
from deep_learning.core.errors import ConfigError
from deep_learning.studies.grid import Study, parse_grid, parse_seeds


def record(run_id: str, final: float, history: dict[int, float]) -> RunRecord:
    return RunRecord(run_id, run_id, "0", "FINISHED", 0, 0, {}, {"val_accuracy": final}, {}, {"val_accuracy": history})


def test_a_spread_is_numpys_mean_and_sample_std():
    values = [0.91, 0.93, 0.88, 0.95]
    spread = Spread.of(values)
    assert (spread.mean, spread.std, spread.min, spread.max, spread.n) == pytest.approx(
        (np.mean(values), np.std(values, ddof=1), 0.88, 0.95, 4)
    )
    assert math.isnan(Spread.of([0.5]).std)


def test_welchs_interval_is_scipys():
    a, b = [0.91, 0.93, 0.88, 0.95], [0.80, 0.86, 0.83]
    difference, low, high = welch_interval(Spread.of(a), Spread.of(b))
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (difference, low, high) == pytest.approx((np.mean(a) - np.mean(b), interval.low, interval.high))
    assert verdict_of(low, high) == DIFFERS
    assert verdict_of(*welch_interval(Spread.of(a), Spread.of([0.92, 0.90, 0.94]))[1:]) == WITHIN_NOISE
    assert verdict_of(*welch_interval(Spread.of(a), Spread.of([0.9]))[1:]) == TOO_FEW


def test_groups_roll_up_per_epoch_and_devices_are_judged_against_the_cpu():
    members = [
        ("lr=0.1 cpu", "lr=0.1", "cpu", record("a", 0.90, {1: 0.80, 2: 0.90})),
        ("lr=0.1 cpu", "lr=0.1", "cpu", record("b", 0.92, {1: 0.82, 2: 0.92})),
        ("lr=0.1 cuda", "lr=0.1", "cuda", record("c", 0.91, {1: 0.81, 2: 0.91})),
        ("lr=0.1 cuda", "lr=0.1", "cuda", record("d", 0.93, {1: 0.84})),  # stopped after epoch 1
    ]
    rollups = roll_up(members, ["val_accuracy"])
    assert [(rollup.group, rollup.run_ids) for rollup in rollups] == [("lr=0.1 cpu", ["a", "b"]), ("lr=0.1 cuda", ["c", "d"])]
    cuda = rollups[1]
    assert cuda.epochs["val_accuracy"][1].n == 2 and cuda.epochs["val_accuracy"][2].n == 1
    assert cuda.final["val_accuracy"].mean == pytest.approx(0.92)
    (verdict,) = device_verdicts(rollups, ["val_accuracy"])
    assert (verdict.device, verdict.reference, verdict.verdict) == ("cuda", "cpu", WITHIN_NOISE)
    assert verdict.difference == pytest.approx(0.01)
    logged = {(key, step): value for key, value, step in parent_metrics(rollups)}
    assert logged["lr_0.1 cpu/val_accuracy_mean", 2] == pytest.approx(0.91)
    assert logged["lr_0.1 cuda/val_accuracy_n", 2] == 1 and ("lr_0.1 cuda/val_accuracy_std", 2) not in logged  # NaN is left out


def test_a_sweep_of_seeds_alone_logs_its_one_groups_metrics_without_a_prefix():
    members = [("", "", "auto", record("a", 0.90, {1: 0.90})), ("", "", "auto", record("b", 0.92, {1: 0.92}))]
    logged = {(key, step): value for key, value, step in parent_metrics(roll_up(members, ["val_accuracy"]))}
    assert logged["val_accuracy_mean", 1] == pytest.approx(0.91)  # MLflow refuses a name that starts with "/"
    assert not any(key.startswith("/") for key, _ in logged)


def seeded(run_id: str, val_accuracy: dict[int, float], test_accuracy: float) -> RunRecord:
    return RunRecord(
        run_id,
        run_id,
        "0",
        "FINISHED",
        0,
        0,
        {},
        {"val_accuracy": val_accuracy[max(val_accuracy)], "test_accuracy": test_accuracy},
        {},
        {"val_accuracy": val_accuracy},
    )


def test_each_device_is_set_against_the_cpu_run_of_the_same_seed():
    members = [  # (configuration, device, seed, run); the CPU is the reference though it comes second
        ("lr=0.1", "cuda", 1, seeded("c1", {1: 0.81, 2: 0.90}, 0.915)),
        ("lr=0.1", "cuda", 2, seeded("c2", {1: 0.82, 2: 0.95}, 0.93)),
        ("lr=0.1", "cuda", 3, seeded("c3", {1: 0.50}, 0.5)),  # no CPU run of seed 3: left out
        ("lr=0.1", "cpu", 1, seeded("a1", {1: 0.80, 2: 0.90}, 0.91)),
        ("lr=0.1", "cpu", 2, seeded("a2", {1: 0.82, 2: 0.92}, 0.93)),
        ("lr=0.2", "cpu", 1, seeded("b1", {1: 0.70}, 0.7)),  # one device: nothing to set against
    ]
    differences = seed_differences(members, ["val_accuracy", "test_accuracy", "test_f1"])
    assert [(d.configuration, d.metric, d.device, d.reference) for d in differences] == [
        ("lr=0.1", "val_accuracy", "cuda", "cpu"),
        ("lr=0.1", "test_accuracy", "cuda", "cpu"),
    ]
    validation, test = differences
    # seed 1: |0.81 - 0.80| at epoch 1, 0 at epoch 2; seed 2: 0 at epoch 1, |0.95 - 0.92| at epoch 2
    assert validation.per_seed == pytest.approx({1: 0.01, 2: 0.03}) and validation.largest == pytest.approx(0.03)
    # no test history: the final values, |0.915 - 0.91| and |0.93 - 0.93|
    assert test.per_seed == pytest.approx({1: 0.005, 2: 0.0}) and test.largest == pytest.approx(0.005)
    markdown = to_markdown([], [], differences)
    assert "| lr=0.1 | val_accuracy | cuda - cpu | 3.00e-02 | seed 1: 1.00e-02, seed 2: 3.00e-02 |" in markdown
    assert "| lr=0.1 | test_accuracy | cuda - cpu | 5.00e-03 | seed 1: 5.00e-03, seed 2: 0 |" in markdown
    first, _ = json.loads(to_json([], [], differences))["seed_differences"]
    assert SeedDifference(**{**first, "per_seed": {int(seed): value for seed, value in first["per_seed"].items()}}) == validation


def test_a_studys_points_are_the_cross_product_each_labelled_by_what_sets_it_apart():
    study = Study(TrainConfig(), parse_grid(["lr=0.05,0.1", "batch_size=32"]), parse_seeds(2, "", 7), ["cpu", "cuda"])
    points = study.points()
    assert len(points) == 2 * 1 * 2 * 2
    assert points[0].label == "lr=0.05 batch_size=32 seed=7 cpu" and points[0].group == "lr=0.05 batch_size=32 cpu"
    assert points[0].configuration == "lr=0.05 batch_size=32"
    assert (points[-1].config.lr, points[-1].config.seed, points[-1].config.device) == (0.1, 8, "cuda")
    assert Study.from_json(study.to_json()) == study
    assert parse_grid(["lr=0.1 deterministic=true,false"]) == {"lr": [0.1], "deterministic": [True, False]}


@pytest.mark.parametrize(
    ("grid", "seeds", "message"),
    [
        (["nope=1,2"], (None, ""), "--grid names 'nope', which is not a setting a sweep can vary"),
        (["seed=1,2"], (None, ""), "(--seeds and --devices set those)"),
        (["lr"], (None, ""), "--grid takes NAME=V1,V2,..."),
        (["epochs=two"], (None, ""), "--grid epochs: 'two' is not an int"),
        (["lr=-1"], (None, ""), "The sweep's point lr=-1.0, seed=42 is not a valid config: lr must be a finite number above 0"),
        ([], (0, ""), "--seeds must be 1 or more, not 0"),
        ([], (None, "1,x"), "--seed-list takes whole numbers"),
    ],
)
def test_bad_grids_and_seeds_are_one_line(grid, seeds, message):
    with pytest.raises(ConfigError) as raised:
        Study(TrainConfig(), parse_grid(grid), parse_seeds(*seeds, 42), ["cpu"]).points()
    assert message in str(raised.value) and "\n" not in str(raised.value)
