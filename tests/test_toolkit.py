"""The toolkit from Python: a run's result as text, HTML and a DataFrame; `runs`, `compare` and `load_model`, each
read back against MLflow's own client and against the CLI command that shares its code."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import threading
import time

import pytest
import torch
from commands import invoke
from mlflow import MlflowClient
from PIL import Image

import deep_learning
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.files import load_dataset
from deep_learning.core.errors import DeepLearningError, InputError
from deep_learning.experiment.results import ExperimentResult

SMALL = TrainConfig(epochs=2, train_subset=1000, device="cpu")


@pytest.fixture(scope="module")
def trained(module_store):
    """One run, and a sweep of 2 seeds whose children each keep their best checkpoint, both made from Python."""
    result = deep_learning.run_experiment(SMALL)
    swept = deep_learning.sweep(seeds=2, devices="cpu", epochs=2, train_subset=1000, keep_best=1)
    client = MlflowClient(module_store)
    children = [run.info.run_id for run in client.search_runs(["0"], f"tags.`mlflow.parentRunId` = '{swept.run_id}'")]
    return {"result": result, "swept": swept, "client": client, "parent": swept.run_id, "children": sorted(children)}


def inline_pngs(page: str) -> list[Image.Image]:
    images = []
    for encoded in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        image.load()
        images.append(image)
    return images


def test_a_results_frame_holds_every_logged_epoch_metric(trained):
    result, client = trained["result"], trained["client"]
    frame = result.to_pandas()
    assert list(frame.index) == [1, 2] and frame.index.name == "epoch"
    logged = client.get_run(result.run_id).data.metrics
    keys = {key for key in logged if not key.startswith("system/")} - set(
        result.test_metrics
    )  # system metrics are sampled over time, not per epoch
    assert set(frame.columns) == keys
    for key in ("train_loss", "val_accuracy", "epoch_seconds"):
        history = {metric.step: metric.value for metric in client.get_metric_history(result.run_id, key)}
        assert frame[key].to_dict() == pytest.approx(history), key


def test_a_result_shows_its_name_final_metrics_and_where_to_browse_it(trained):
    result = trained["result"]
    lines = repr(result).splitlines()
    assert len(lines) == 3
    assert result.run_name in lines[0] and result.run_id in lines[0] and "2 epochs" in lines[0]
    assert f"val_accuracy {result.history[-1].val_metrics['accuracy']:.4f}" in lines[1]
    assert f"test_accuracy {result.test_accuracy:.4f}" in lines[1]
    assert lines[2] == f"  to browse it: {result.where_to_look}"


def test_a_results_notebook_display_has_its_epochs_curves_and_browse_command(trained):
    result = trained["result"]
    page = result._repr_html_()
    assert page.count("<tr>") == 1 + len(result.history)  # the header and one row per epoch
    assert "<th>val_accuracy</th>" in page and f"{result.history[-1].val_loss:.4g}" in page
    (curves,) = inline_pngs(page)
    assert curves.width >= 500 and curves.height >= 200
    assert "<code>mlflow ui --backend-store-uri sqlite:///" in page


def test_runs_lists_what_the_cli_lists_and_converts_to_a_frame(trained):
    listed = deep_learning.runs()
    assert str(listed) == invoke("runs").stdout
    frame = listed.to_pandas()
    ids = [trained["result"].run_id, *trained["children"]]
    assert sorted(frame["run_id"]) == sorted(ids)  # the sweep's parent is left out
    row = frame.set_index("run_id").loc[trained["result"].run_id]
    assert row["metrics.test_accuracy"] == trained["client"].get_run(trained["result"].run_id).data.metrics["test_accuracy"]
    assert row["params.train_subset"] == "1000" and row["status"] == "FINISHED"
    assert "<table>" in listed._repr_html_()


def test_compare_puts_runs_side_by_side_as_the_cli_does(trained):
    first, second = trained["children"]
    compared = deep_learning.compare(first, second)
    assert str(compared) == invoke("compare", first, second).stdout
    frame = compared.to_pandas()
    assert list(frame.columns) == [first, second]
    metrics = {run_id: trained["client"].get_run(run_id).data.metrics for run_id in (first, second)}
    assert frame.loc["test_accuracy"].to_dict() == {run_id: metrics[run_id]["test_accuracy"] for run_id in (first, second)}
    page = compared._repr_html_()
    assert "<td>params.seed</td>" in page  # the one setting the two runs differ in
    assert len(inline_pngs(page)) == 1


def test_a_sweep_from_python_trains_its_points_as_children_of_one_parent(trained):
    swept, client = trained["swept"], trained["client"]
    assert sorted(swept.children.values()) == trained["children"] and set(swept.children) == {"seed=42 cpu", "seed=43 cpu"}
    assert all(client.get_run(run_id).info.status == "FINISHED" for run_id in trained["children"])
    assert client.get_run(swept.run_id).data.tags["deep_learning.kind"] == "sweep"
    assert swept.summary() in repr(swept) and "<table>" in swept._repr_html_()


def test_compare_of_a_sweeps_parent_gives_its_roll_up(trained):
    rollup = deep_learning.compare(trained["parent"])
    assert str(rollup) == invoke("compare", trained["parent"]).stdout == trained["swept"].markdown
    assert rollup.to_pandas().equals(trained["swept"].to_pandas())
    frame = rollup.to_pandas()
    accuracy = frame[frame["metric"] == "test_accuracy"].iloc[0]
    values = [trained["client"].get_run(run_id).data.metrics["test_accuracy"] for run_id in trained["children"]]
    assert accuracy["n"] == 2 and accuracy["mean"] == pytest.approx(sum(values) / 2)
    assert "<table>" in rollup._repr_html_()


@pytest.mark.parametrize("best", [False, True], ids=["final", "best"])
def test_load_model_rebuilds_the_trained_module_that_scores_its_logged_accuracy(trained, data_root, best):
    run_id = trained["children"][0]
    model = deep_learning.load_model(run_id, best=best, device="cpu")
    assert isinstance(model, torch.nn.Module) and not model.training
    test = load_dataset("mnist", train=False, root=data_root)
    images, labels = torch.stack([test[index][0] for index in range(len(test))]), torch.as_tensor(test.targets)
    with torch.inference_mode():
        accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
    client = trained["client"]
    if best:  # the best checkpoint by val_loss, scored here on the test split: its own weights, not the final ones
        best_epoch = min(client.get_metric_history(run_id, "val_loss"), key=lambda metric: metric.value).step
        final = deep_learning.load_model(run_id, device="cpu")
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), final.state_dict().values()))
        assert same == (best_epoch == 2)
        assert 0.5 < accuracy <= 1.0
    else:
        assert accuracy == client.get_run(run_id).data.metrics["test_accuracy"]


def test_load_model_of_a_sweeps_parent_says_it_holds_no_model(trained):
    with pytest.raises(InputError, match="is a sweep run, which holds no model"):
        deep_learning.load_model(trained["parent"])


def test_a_search_from_python_gives_one_row_per_trial(store):
    searched = deep_learning.sweep(
        search="optuna", space={"lr": "loguniform:0.01:0.5"}, trials=2, epochs=1, train_subset=500, device="cpu", progress=False
    )
    frame = searched.to_pandas()
    assert len(frame) == 2 and set(frame["status"]) == {"FINISHED"}
    best = frame.loc[frame["metrics.val_loss"].idxmin()]
    assert float(best["params.lr"]) == pytest.approx(searched.best_params["lr"]) and searched.best_value == best["metrics.val_loss"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grid": {"nope": [1, 2]}}, "nope"),
        ({"search": "optuna", "grid": {"lr": [0.1]}}, "A search varies its --param settings"),
        ({"seeds": 2, "epochs": 0}, "epochs must be a positive integer"),
    ],
    ids=["unknown setting", "search with a grid", "bad base setting"],
)
def test_a_bad_sweep_from_python_is_one_line_before_any_run(store, options, message):
    with pytest.raises(DeepLearningError, match=message) as raised:
        deep_learning.sweep(devices="cpu", **options)
    assert "\n" not in str(raised.value)
    assert MlflowClient(store).search_runs(["0"]) == []


def test_a_sweep_interrupted_by_ctrl_c_is_killed_and_sweep_resume_finishes_it(store):
    """SIGINT in the middle of the second child, as a notebook's stop button sends it; then sweep(resume=...)."""
    client = MlflowClient(store)

    def interrupt_in_the_second_child() -> None:
        while True:
            running = client.search_runs(["0"], "attributes.status = 'RUNNING' and tags.`deep_learning.point` = 'seed=43'")
            if running and client.get_metric_history(running[0].info.run_id, "val_loss"):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=interrupt_in_the_second_child, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt) as raised:
        deep_learning.sweep(seeds=3, epochs=3, train_subset=5_000, progress=False)
    watcher.join(timeout=60)
    parent_id = raised.value.sweep_run_id
    assert f"sweep(resume={parent_id!r})" in str(raised.value)
    runs = {run.data.tags.get("deep_learning.point"): run for run in client.search_runs(["0"])}
    assert {point: run.info.status for point, run in runs.items()} == {None: "KILLED", "seed=42": "FINISHED", "seed=43": "KILLED"}

    resumed = deep_learning.sweep(resume=parent_id, progress=False)
    assert resumed.run_id == parent_id and set(resumed.children) == {"seed=42", "seed=43", "seed=44"}
    assert {run.info.status for run in client.search_runs(["0"])} == {"FINISHED"}
    assert resumed.children["seed=43"] == runs["seed=43"].info.run_id  # the killed child resumed from its checkpoint
    second = client.get_metric_history(resumed.children["seed=43"], "val_loss")
    assert sorted(metric.step for metric in second) == [1, 2, 3]


def test_a_run_on_a_server_links_to_its_page():
    page = "http://127.0.0.1:5000/#/experiments/1/runs/abc"
    result = ExperimentResult("abc", "mlp-mnist-cpu", [], {}, page)
    assert f'<a href="{page}" target="_blank">{page}</a>' in result._repr_html_()
    assert repr(result).splitlines()[1] == "  final: -"  # a run resumed after its last epoch trained none here
