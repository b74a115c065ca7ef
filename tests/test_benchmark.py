"""`deep-learning bench --quick` end to end: its JSON and markdown, the chapter's code it times, its arithmetic.

Timings are never asserted (machines are noisy), only that every number is there and sane.
"""

from __future__ import annotations

import functools
import json
import math
import os

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from deep_learning.benchmarks import chapter
from deep_learning.benchmarks.loops import BATCH_SIZES, LOOPS, OPTIONS, WARMUP_EPOCHS, Contestant, race
from deep_learning.benchmarks.machine import flops_per_sample
from deep_learning.benchmarks.report import markdown
from deep_learning.benchmarks.targets import Verdict, judge, paired_ratio
from deep_learning.cli import cli
from deep_learning.core.model import build_model
from deep_learning.core.training import evaluate


def test_the_benchmarked_chapter_loop_runs_the_chapters_definitions():
    # tests/chapter_listing.py takes these definitions from the benchmark, and test_chapter.py
    # checks them against the chapter's text.
    loop = chapter.chapter_loop()
    assert set(loop) == {"train", "evaluate", "train_and_evaluate"}
    assert "total_loss += loss.item()" in chapter.TRAIN
    torch.manual_seed(0)
    batches = [(torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))) for _ in range(4)]
    model, cpu = build_model(), torch.device("cpu")
    before = [parameter.detach().clone() for parameter in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loss, _ = loop["train"](model, batches, nn.CrossEntropyLoss(), optimizer, chapter.chapter_metric(), cpu)
    assert math.isfinite(train_loss) and any(not torch.equal(old, new) for old, new in zip(before, model.parameters()))
    # The timed chapter loop and the package's evaluate score the trained model alike.
    chapters = loop["evaluate"](model, batches, nn.CrossEntropyLoss(), chapter.chapter_metric(), cpu)
    ours = evaluate(model, batches, nn.CrossEntropyLoss(), chapter.chapter_metric(), cpu)
    assert chapters == pytest.approx(ours, rel=1e-6)


def test_flops_per_sample_of_the_mlp():
    # Forward: 2 * (784*128 + 128*10) = 203,264. Backward: both weight gradients (203,264) and the
    # hidden activations' gradient (2 * 128*10 = 2,560); none for the input, which needs no gradient.
    assert flops_per_sample() == {"train": 409_088, "evaluate": 203_264}


def test_verdicts_say_pass_or_miss_and_by_how_much():
    faster = Verdict("speedup", "cpu", "", 9.5, 8.0, True, "x")
    slower = Verdict("overhead", "host", "", 0.9, 0.7, False, "s")
    assert (faster.passed, faster.sentence(), faster.goal()) == (True, "PASS by 1.5x", ">= 8.0x")
    assert (slower.passed, slower.sentence(), slower.goal()) == (False, "MISS by 0.20 s", "<= 0.70 s")
    share = Verdict("share", "cpu", "", 3.5, 1.0, False, "%")
    assert (share.passed, share.sentence(), share.goal()) == (False, "MISS by 2.5 percentage points", "<= 1.0%")


@pytest.fixture(scope="module")
def quick_run(data_root, tmp_path_factory):
    """One `deep-learning bench --quick` on the CPU, with the user's own MLflow settings in place."""
    folder = tmp_path_factory.mktemp("bench")
    user_store = f"sqlite:///{folder / 'user.db'}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        monkeypatch.setenv("DEEP_LEARNING_DATA_ROOT", str(data_root))
        monkeypatch.setenv("DEEP_LEARNING_OFFLINE", "1")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", user_store)
        monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        result = CliRunner().invoke(cli, ["bench", "--quick", "--device", "cpu", "--output", "out"], catch_exceptions=False)
        environment_after = (os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_EXPERIMENT_NAME"))
    return folder, user_store, result, environment_after


def test_rounds_alternate_direction_and_ratios_pair_epochs_of_one_round():
    order: list[str] = []
    lineup = [Contestant(torch.device("cpu"), "tensor", 64, loop, functools.partial(order.append, loop), stopwatch=None) for loop in LOOPS]
    race(lineup, repeats=3, progress=lambda line: None)
    rounds = [list(LOOPS) if number % 2 == 0 else list(reversed(LOOPS)) for number in range(WARMUP_EPOCHS + 3)]
    assert order == [loop for round_order in rounds for loop in round_order]
    assert all(len(contestant.epoch_seconds) == 3 for contestant in lineup)

    # Round 2 ran on a slower machine: the medians of the two contestants would differ by 20%, their rounds do not.
    assert paired_ratio([1.0, 1.2, 1.02], [1.0, 1.0, 1.0]) == 1.02
    assert paired_ratio([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) == 1.0
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])


def test_quick_benchmark_writes_json_and_markdown(quick_run):
    folder, _, result, _ = quick_run
    assert result.exit_code == 0, result.output
    results = json.loads((folder / "out" / "benchmark.json").read_text())
    assert {
        "settings",
        "host",
        "devices",
        "flops",
        "sgemm",
        "epochs",
        "host_reads",
        "cuda_epoch_syncs",
        "mlflow",
        "studies",
        "startup",
        "mlflow_run",
        "memory",
        "targets",
    } <= set(results)
    assert results["quick"] is True and results["mlflow_run"] == {"skipped": "--quick"}
    assert results["settings"]["devices"] == ["cpu"] and results["cuda_epoch_syncs"] == {}
    assert results["settings"]["torch_threads"]["intra_op"] >= 1
    assert results["host"]["cpu_name"] and results["host"]["torch_num_threads"] >= 1

    cells = {(row["loader"], row["batch_size"], row["loop"]) for row in results["epochs"]}
    assert cells == {(loader, batch, loop) for loader in ("dataloader", "tensor") for batch in BATCH_SIZES for loop in LOOPS}
    options = {(row["loader"], row["batch_size"], row["loop"]) for row in results["options"]}
    assert options == {("tensor", batch, option) for batch in BATCH_SIZES for option in OPTIONS}
    assert results["settings"]["options"] == list(OPTIONS)
    for row in results["epochs"] + results["options"]:
        assert len(row["epoch_seconds"]) == results["settings"]["repeats"] == 1
        assert row["median_epoch_seconds"] > 0 and row["gflops"] > 0
        assert (row["median_tracking_seconds"] > 0) == (row["loop"] == "tracked")

    positive = [
        results["sgemm"]["cpu"]["gflops"],
        results["flops"]["per_epoch"],
        results["memory"]["peak_rss_bytes"],
        results["startup"]["median_seconds"],
        *(
            results["mlflow"][key]
            for key in (
                "import_tracking_seconds",
                "first_run_seconds",
                "later_run_seconds",
                "log_model_first_seconds",
                "log_model_second_seconds",
                "epoch_metrics_cpu_seconds",
                "system_metrics_core_share",
            )
        ),
    ]
    assert all(math.isfinite(value) and value > 0 for value in positive)

    targets = {target["name"]: target for target in results["targets"]}
    assert set(targets) == {
        "speedup_batch_64",
        "speedup_batch_1024",
        "sgemm_share_batch_1024",
        "tracked_over_untracked_batch_64",
        "tracked_over_untracked_batch_1024",
        "mlflow_share_batch_64",
        "mlflow_share_batch_1024",
        "run_fixed_seconds",
        "log_model_first_seconds",
        "log_model_second_seconds",
        "system_metrics_cpu_share",
        "help_seconds",
        "host_reads_per_batch_train",
        "host_reads_per_pass_train",
        "host_reads_per_batch_evaluate",
        "host_reads_per_pass_evaluate",
        "study_extra_child_seconds",
        "vectorized_seeds_over_one_run",
        "batch_handling_share_batch_64",
    }
    assert targets["host_reads_per_batch_train"]["passed"] and targets["host_reads_per_pass_train"]["passed"]
    assert {(row["loop"], row["pass"]) for row in results["host_reads"]} == {
        (loop, name) for loop in ("chapter", "ours") for name in ("train", "evaluate")
    }
    assert all(target["verdict"].startswith(("PASS by", "MISS by")) for target in targets.values())
    assert judge(results) and results["targets"] == [verdict.as_dict() for verdict in judge(results)]

    tasks = results["tasks"]
    assert {(row["loop"], row["loader"]) for row in tasks["epochs"]} == {
        (task, loader) for task in ("regression", "language model") for loader in ("dataloader", "tensor")
    }
    assert all(row["median_epoch_seconds"] > 0 and row["train_samples"] > 0 for row in tasks["epochs"])
    assert [row["path"] for row in tasks["batch_handling"]] == ["tuple path", "batches as made"]
    assert all(row["microseconds_per_batch"] > 0 for row in tasks["batch_handling"])

    [study] = results["studies"]
    assert study["device"] == "cpu" and study["seeds"] == 2 and study["extra_child_seconds"] > 0
    assert study["one_run_seconds"] < study["separate_seconds"] and study["separate_over_one_run"] > 1
    assert 0 <= study["largest_differences"]["val_loss"] < 1e-3  # the vectorized seeds train as their separate runs do

    markdown = (folder / "out" / "benchmark.md").read_text()
    assert "noisy and preliminary" in markdown and "| cpu (2 seeds, 1 epoch(s)) |" in markdown
    assert "| cpu | tensor | 1024 | tracked |" in markdown
    assert "| speedup_batch_64 | cpu |" in markdown and "benchmark.json" in result.output
    assert "| cpu | ours | train | 0 | 1 |" in markdown and "| cpu | 1024 | compile-amp-bf16 |" in markdown
    assert "| cpu | regression | 354 | 32 | tensor |" in markdown and "| cpu | batches as made |" in markdown


def test_the_benchmark_leaves_the_users_mlflow_alone(quick_run):
    folder, user_store, _, environment_after = quick_run
    assert environment_after == (str(folder), user_store, None)
    assert not (folder / "user.db").exists() and not (folder / "mlruns").exists()


def test_accelerator_results_are_judged_with_the_gpu_targets(quick_run):
    # The quick run's CPU rows, copied as if a CUDA device had been benchmarked too: the accelerator
    # branches of the judge and the report run here, on a machine without one.
    folder, _, _, _ = quick_run
    results = json.loads((folder / "out" / "benchmark.json").read_text())
    gpu = "cuda:0"

    def on_gpu(rows, **changes):
        return [{**row, "device": gpu, **changes} for row in rows]

    options_64 = [row for row in results["options"] if row["batch_size"] == 64]
    fastest = min(row["median_epoch_seconds"] for row in options_64) / 2  # CUDA graphs, twice as fast as any
    graphs = {**options_64[0], "device": gpu, "loop": "compile-reduce-overhead", "median_epoch_seconds": fastest}
    results |= {
        "settings": {**results["settings"], "devices": ["cpu", gpu]},
        "devices": {**results["devices"], gpu: {**results["devices"]["cpu"], "name": "NVIDIA H200"}},
        "sgemm": {**results["sgemm"], gpu: results["sgemm"]["cpu"]},
        "epochs": results["epochs"] + on_gpu(results["epochs"]),
        "options": results["options"] + on_gpu(results["options"]) + [graphs],
        "host_reads": results["host_reads"] + on_gpu(results["host_reads"], cuda_syncs={"per_batch": 0.0, "per_pass": 1.0}),
        "cuda_epoch_syncs": {gpu: {"chapter": 1722, "untracked": 3}},
        "tasks": {key: rows + on_gpu(rows) for key, rows in results["tasks"].items()},
    }
    verdicts = {(verdict.name, verdict.device): verdict for verdict in judge(results)}

    assert verdicts["speedup_batch_64", "cpu"].bound == 8.0 and verdicts["speedup_batch_64", gpu].bound == 10.0
    assert "compile-reduce-overhead" in verdicts["compiled_epoch_batch_64", gpu].measured
    assert verdicts["compiled_epoch_batch_64", gpu].value == fastest and ("compiled_epoch_batch_64", "cpu") not in verdicts
    assert verdicts["cuda_syncs_per_batch_train", gpu].passed and ("cuda_syncs_per_batch_train", "cpu") not in verdicts
    assert verdicts["cuda_syncs_per_epoch", gpu].sentence() == "MISS by 1"

    results["targets"] = [verdict.as_dict() for verdict in verdicts.values()]
    summary = markdown(results)
    assert "on cuda:0: the chapter's loop 1,722, ours 3." in summary
    assert f"| {gpu} | ours | train | 0 | 1 | 0 | 1 |" in summary and f"| {gpu} | 64 | compile-reduce-overhead | {fastest:.3f} |" in summary
