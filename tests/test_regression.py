"""Regression on real data: scikit-learn's diabetes data through `fit` (a user's script) and as `--dataset csv:`,
read back through MLflow's client; the logged models reproduce the logged test scores, through pyfunc, `predict`,
`evaluate` and a real `mlflow models serve`."""

from __future__ import annotations

import csv
import json
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import regression_script
from commands import assert_one_line_error, invoke, train_run
from conftest import model_server
from mlflow import MlflowClient
from readback import assert_valid_png, logged_state_dict_bytes, tracking_uri
from scripts import run_script, terminate_after_first_epoch
from sklearn.datasets import load_diabetes

from deep_learning.core.config import TrainConfig
from deep_learning.core.data.splits import load_splits

SCRIPT = Path(regression_script.__file__)
KEYS = ("train_loss", "train_mae", "val_loss", "val_mae", "test_loss", "test_mae")
CSV_OPTIONS = ("--target", "progression", "--task", "regression", "--epochs", "4", "--batch-size", "32", "--device", "cpu")


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {key: sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key)) for key in KEYS}


@pytest.fixture(scope="module")
def fitted(module_store, tmp_path_factory):
    """One uninterrupted run of the user's script, as a separate process."""
    return MlflowClient(module_store).get_run(run_script(SCRIPT, cwd=tmp_path_factory.mktemp("fit")))


def test_fit_learns_the_diabetes_data_and_logs_every_epoch(fitted, module_store):
    logged = histories(MlflowClient(module_store), fitted.info.run_id)
    assert all([step for step, _ in logged[key]] == [1, 2, 3] for key in KEYS[:4])
    assert logged["train_loss"][-1][1] < logged["train_loss"][0][1]
    assert fitted.data.params["task"] == "regression" and fitted.data.params["metrics"] == "mae"
    assert fitted.data.params["model"] == "__main__:main.<locals>.<lambda>"  # a lambda in a script: what fit can say of it
    assert fitted.data.params["model_class"] == "__main__.Regressor" and fitted.data.params["loss_fn"] == "MSELoss"
    assert fitted.info.run_name == "Regressor-TensorDataset-cpu batch_size=32 seed=7"
    assert fitted.data.metrics["test_mae"] < 0.8  # standardised targets: predicting the mean scores about 0.85


def test_the_logged_model_reproduces_the_test_mae_through_pyfunc(fitted, module_store):
    _, _, test = regression_script.diabetes_splits()
    features, targets = test.tensors
    with tracking_uri(module_store):
        predicted = mlflow.pyfunc.load_model(f"runs:/{fitted.info.run_id}/model").predict(features.numpy())
    assert predicted.shape == (len(features), 1)
    assert float(np.abs(predicted - targets.numpy()).mean()) == pytest.approx(fitted.data.metrics["test_mae"], rel=1e-5)


def test_killed_after_an_epoch_and_resumed_it_ends_as_the_uninterrupted_run(fitted, module_store, tmp_path):
    terminate_after_first_epoch(SCRIPT, tmp_path)
    client = MlflowClient(module_store)
    [killed] = client.search_runs(["0"], "attributes.status = 'KILLED'")
    run_script(SCRIPT, killed.info.run_id, cwd=tmp_path)
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"
    assert histories(client, killed.info.run_id) == histories(client, fitted.info.run_id)
    assert logged_state_dict_bytes(client, killed.info.run_id) == logged_state_dict_bytes(client, fitted.info.run_id)


def write_diabetes_csv(path: Path) -> Path:
    """The diabetes data in its original units (age in years, ...; progression one year on) as a csv file with a header."""
    data = load_diabetes(scaled=False)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*data.feature_names, "progression"])
        writer.writerows([*row, target] for row, target in zip(data.data.tolist(), data.target.tolist()))
    return path


@pytest.fixture(scope="module")
def diabetes_csv(tmp_path_factory) -> Path:
    return write_diabetes_csv(tmp_path_factory.mktemp("csv") / "diabetes.csv")


@pytest.fixture(scope="module")
def csv_run(diabetes_csv, module_store):
    return MlflowClient(module_store).get_run(train_run("--dataset", f"csv:{diabetes_csv}", *CSV_OPTIONS))


def _test_rows(diabetes_csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """The raw feature rows and targets of the run's test split, as the config's seeded split holds them."""
    test = load_splits(TrainConfig(dataset=f"csv:{diabetes_csv}", target="progression", task="regression")).test
    features, targets = test.tensors
    return features.numpy(), targets.numpy()


def test_a_csv_regression_learns_in_the_targets_units_and_logs_its_figure(csv_run, module_store, tmp_path):
    client = MlflowClient(module_store)
    params, metrics = csv_run.data.params, csv_run.data.metrics
    assert (params["task"], params["metrics"], params["model"], params["num_train_samples"]) == (
        "regression",
        "mse,mae,r2",
        "mlp",
        str(442 - 2 * 44),
    )
    assert csv_run.info.run_name == "mlp-diabetes-cpu batch_size=32"
    for key in ("train_mse", "val_mae", "val_r2", "train_loss"):
        assert [metric.step for metric in client.get_metric_history(csv_run.info.run_id, key)] == [1, 2, 3, 4], key
    assert metrics["test_r2"] > 0.2 and 30 < metrics["test_mae"] < 65  # in the targets' units: progression 25 to 346, std 77
    spec = json.loads(Path(client.download_artifacts(csv_run.info.run_id, "data_spec.json", str(tmp_path))).read_text())
    assert spec["features"]["names"][:3] == ["age", "sex", "bmi"] and spec["features"]["target_names"] == ["progression"]
    assert spec["task"] == "regression" and spec["input_shape"] == [10]
    artifacts = {item.path for item in client.list_artifacts(csv_run.info.run_id)}
    assert "predicted_vs_true.png" in artifacts and "confusion_matrix.png" not in artifacts
    assert_valid_png(Path(client.download_artifacts(csv_run.info.run_id, "predicted_vs_true.png", str(tmp_path))), (500, 500), (2000, 2000))


def test_the_csv_models_pyfunc_predict_and_evaluate_reproduce_the_test_scores(csv_run, diabetes_csv, module_store, tmp_path):
    run_id = csv_run.info.run_id
    features, targets = _test_rows(diabetes_csv)
    with tracking_uri(module_store):
        predicted = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(features)  # raw rows: the model standardises them
    assert float(np.abs(predicted - targets).mean()) == pytest.approx(csv_run.data.metrics["test_mae"], rel=1e-5)

    rows = tmp_path / "rows.csv"
    header = json.loads(Path(MlflowClient(module_store).download_artifacts(run_id, "data_spec.json", str(tmp_path))).read_text())[
        "features"
    ]["names"]
    with open(rows, "w", newline="") as file:
        csv.writer(file).writerows(
            [list(reversed(header)), *(list(reversed(row)) for row in features.tolist())]
        )  # columns by name, any order
    result = invoke("predict", run_id, str(rows), "--format", "json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    values = [row["values"]["progression"] for row in json.loads(result.stdout)]
    assert values == pytest.approx(predicted[:, 0].tolist(), rel=1e-5)

    evaluated = invoke("evaluate", run_id, "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    assert (
        f"mae: {csv_run.data.metrics['test_mae']:.4f}" in evaluated.stdout
        and f"r2: {csv_run.data.metrics['test_r2']:.4f}" in evaluated.stdout
    )
    assert "confusion matrix" not in evaluated.stdout


@pytest.mark.server
def test_mlflow_models_serve_answers_for_the_regression_model(csv_run, diabetes_csv, module_store, tmp_path):
    features, _ = _test_rows(diabetes_csv)
    model_uri = f"runs:/{csv_run.info.run_id}/model"
    with model_server(model_uri, module_store, tmp_path) as url:
        request = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"inputs": features.tolist()}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.asarray(json.loads(response.read())["predictions"])
    with tracking_uri(module_store):
        expected = mlflow.pyfunc.load_model(model_uri).predict(features)
    assert served.shape == (len(features), 1) and np.allclose(served, expected, rtol=1e-5)


def _csv(path: Path, rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows(rows)
    return path


@pytest.mark.parametrize(
    "rows, options, message",
    [
        (
            [["a", "b"], [1, 2], [3, 4]],
            ("--target", "y"),
            "has no column 'y' (its columns: a, b): name the column to predict with --target",
        ),
        ([["a", "colour", "y"], *[[index, "red", index % 2] for index in range(20)]], ("--target", "y"), "column 'colour' of"),
        (
            [["a", "species"], *[[index, "setosa"] for index in range(20)]],
            ("--target", "species", "--task", "regression"),
            "holds 'setosa' (line 2), not a number: --task regression needs numbers",
        ),
        (
            [["a", "y"], *[[index, index + 0.5] for index in range(20)]],
            ("--target", "y"),
            "holds numbers that are not class labels ('0.5'): give --task regression",
        ),
        (
            [["a", "y"], *[[index, index % 2] for index in range(20)]],
            ("--target", "y", "--task", "sequence"),
            "--task sequence does not fit a csv dataset",
        ),
        ([["a", "y"], *[[index, index] for index in range(20)]], (), "needs --target COLUMN"),
    ],
    ids=["no target column", "text feature", "regression of text", "numbers as classes", "wrong task", "no target given"],
)
def test_a_csv_that_does_not_fit_is_one_line_before_any_run(rows, options, message, store, tmp_path):
    path = _csv(tmp_path / "table.csv", rows)
    assert_one_line_error(invoke("train", "--dataset", f"csv:{path}", *options, "--epochs", "1", "--device", "cpu"), message)
    assert not Path("mlflow.db").exists() or not MlflowClient(store).search_runs(["0"])


def test_a_model_whose_output_does_not_fit_the_task_is_one_line(store, tmp_path):
    path = write_diabetes_csv(tmp_path / "diabetes.csv")
    result = invoke(
        "train",
        "--dataset",
        f"csv:{path}",
        "--target",
        "progression",
        "--task",
        "regression",
        "--model",
        "user_models:three_outputs",
        "--device",
        "cpu",
    )
    assert_one_line_error(result, "outputs (2, 3) for a batch of 2, not (2, 1): a regression's output must have the target's shape")
    assert not MlflowClient(store).search_runs(["0"])


def test_a_csv_regression_sweep_trains_its_seeds_together_and_rolls_up_its_metrics(diabetes_csv, module_store):
    result = invoke(
        "sweep",
        "--dataset",
        f"csv:{diabetes_csv}",
        "--target",
        "progression",
        "--task",
        "regression",
        "--grid",
        "lr=0.02,0.05",
        "--seeds",
        "2",
        "--vectorize",
        "--epochs",
        "2",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    parent_id = result.stdout.strip().splitlines()[-1].split()[1]
    client = MlflowClient(module_store)
    children = client.search_runs(["0"], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(children) == 4 and all(
        child.info.status == "FINISHED" and child.data.tags["deep_learning.vectorized"] == "2" for child in children
    )
    parent = client.get_run(parent_id).data.metrics
    for group in ("lr_0.02 cpu", "lr_0.05 cpu"):
        assert {f"{group}/val_mae_mean", f"{group}/test_r2_std", f"{group}/val_loss_n"} <= set(parent), group
    one_per_lr = {child.data.params["lr"]: child.info.run_id for child in children}
    comparison = invoke("compare", *one_per_lr.values(), "--format", "csv")
    assert comparison.exit_code == 0, comparison.output
    rows = {line.split(",")[0] for line in comparison.stdout.splitlines()}
    assert {"test_mae", "test_mse", "test_r2", "val_mae", "params.lr"} <= rows
