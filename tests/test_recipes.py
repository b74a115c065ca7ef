"""The CLI's recipes beyond the chapter's: built-in and user models, image folders, metrics, config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from commands import assert_one_line_error, invoke, train_run
from mlflow import MlflowClient
from PIL import Image

from deep_learning.core.data.files import load_dataset

SHORT = ("--epochs", "1", "--train-subset", "2000", "--device", "cpu")


def _run(client: MlflowClient, run_id: str):
    return client.get_run(run_id)


@pytest.mark.parametrize(
    "model, options, name",
    [
        ("cnn", ("--train-subset", "2000", "--batch-size", "32"), "batch_size=32"),
        ("transformer", ("--train-subset", "10000", "--lr", "0.05"), "lr=0.05"),
    ],
)
def test_built_in_models_learn_and_log_every_metric(model, options, name, store):
    run_id = train_run("--model", model, "--metrics", "accuracy,f1", "--epochs", "1", "--device", "cpu", *options)
    run = _run(MlflowClient(store), run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == f"{model}-mnist-cpu {name}"
    assert run.data.metrics["val_accuracy"] > 0.3  # chance is 0.1
    assert 0.2 < run.data.metrics["val_f1"] <= 1 and "test_f1" in run.data.metrics and "train_f1" in run.data.metrics
    assert run.data.tags["deep_learning.model_format"] == "pt2"


def test_a_user_model_by_import_path_with_model_args(store):
    run_id = train_run("--model", "user_models:tiny_cnn", "--model-arg", "width=4", "--metrics", "accuracy,top5,auroc", *SHORT)
    run = _run(MlflowClient(store), run_id)
    assert run.info.run_name == "tiny_cnn-mnist-cpu"
    assert json.loads(run.data.params["model_args"]) == {"width": 4}
    assert run.data.params["num_parameters"] == str(1 * 4 * 9 + 4 + 4 * 10 + 10)
    assert run.data.metrics["val_top5"] >= run.data.metrics["val_accuracy"]
    assert 0.5 < run.data.metrics["val_auroc"] <= 1


def write_image_folder(root: Path, data_root: Path, per_class: int, splits=("train", "test"), mode: str = "L") -> Path:
    """PNGs of the first MNIST test images of digits 0, 1 and 2, in root/<split>/<digit>/."""
    test = load_dataset("mnist", train=False, root=data_root)
    counts: dict[tuple[str, int], int] = {}
    for index in range(len(test)):
        label = int(test.targets[index])
        if label > 2:
            continue
        for split in splits:
            if counts.get((split, label), 0) < per_class:
                folder = root / split / str(label)
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(test.data[index].numpy()).convert(mode).save(folder / f"{index}.png")
                counts[split, label] = counts.get((split, label), 0) + 1
                break
        if len(counts) == len(splits) * 3 and min(counts.values()) == per_class:
            break
    return root


def test_an_image_folder_trains_and_predict_reads_its_images(store, data_root, tmp_path):
    folder = write_image_folder(tmp_path / "digits", data_root, per_class=60)
    run_id = train_run("--dataset", f"imagefolder:{folder}", "--model", "cnn", "--epochs", "3", "--device", "cpu")
    client = MlflowClient(store)
    run = _run(client, run_id)
    assert run.info.run_name == "cnn-digits-cpu"
    assert run.data.params["num_train_samples"] == str(180 - round(180 * 0.1)) and run.data.params["num_val_samples"] == str(
        round(180 * 0.1)
    )
    spec = json.loads(Path(client.download_artifacts(run_id, "data_spec.json", str(tmp_path))).read_text())
    assert spec == {
        "input_shape": [1, 28, 28],
        "input_dtype": "float32",
        "num_classes": 3,
        "class_names": ["0", "1", "2"],
        "task": "classification",
        "target_shape": [],
        "target_dtype": "int64",
    }
    assert run.data.metrics["test_accuracy"] > 0.5
    images = sorted((folder / "test").glob("*/*.png"))
    result = invoke("predict", run_id, *map(str, images), "--device", "cpu", "--format", "json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    correct = sum(prediction["class_name"] == Path(prediction["image"]).parent.name for prediction in predictions)
    assert correct / len(images) == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)


def test_a_run_is_repeated_from_its_own_config(store, tmp_path):
    first = train_run(
        "--model",
        "cnn",
        "--model-arg",
        "channels=[4, 8]",
        "--metrics",
        "accuracy,recall",
        "--epochs",
        "1",
        "--train-subset",
        "500",
        "--device",
        "cpu",
    )
    client = MlflowClient(store)
    config = Path(client.download_artifacts(first, "config.yaml", str(tmp_path)))
    assert yaml.safe_load(config.read_text())["model_args"] == json.dumps({"channels": [4, 8]})
    again = train_run("--config", str(config))
    runs = [_run(client, run_id) for run_id in (first, again)]
    assert runs[0].data.params == runs[1].data.params
    assert runs[0].data.metrics["val_recall"] == runs[1].data.metrics["val_recall"]

    toml = tmp_path / "settings.toml"
    toml.write_text('model = "cnn"\nmetrics = "accuracy,precision"\nepochs = 1\ntrain_subset = 300\ndevice = "cpu"\n')
    third = _run(client, train_run("--config", str(toml), "--seed", "7"))
    assert (third.data.params["seed"], third.data.params["model"], third.data.params["epochs"]) == ("7", "cnn", "1")
    assert "val_precision" in third.data.metrics


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "no_such_module:build"], "model 'no_such_module:build' cannot be imported: ModuleNotFoundError"),
        (["--model", "user_models:raises"], "model 'user_models:raises' raised ValueError: bad width"),
        (["--model", "user_models:not_a_module"], "returned a int, not a torch.nn.Module"),
        (["--model", "cnn", "--model-arg", "depth=3"], "depth"),
        (["--model", "mlp", "--model-arg", "hidden"], "key=value"),
        (["--dataset", "user_datasets:records"], "not (input, target)"),
        (["--metrics", "accuracy,f2"], "unknown metric 'f2'"),
        (["--dataset", "nope"], "dataset must be one of mnist, fashion-mnist, imagefolder:DIR"),
        (["--config", "missing.yaml"], "Cannot read config file missing.yaml"),
    ],
    ids=[
        "import fails",
        "factory raises",
        "not a module",
        "unknown model arg",
        "model arg without value",
        "not pairs",
        "unknown metric",
        "unknown dataset",
        "missing config",
    ],
)
def test_bad_input_is_one_line_and_no_run_is_left(store, args, message):
    assert_one_line_error(invoke("train", *SHORT, *args), message)
    assert not Path("mlflow.db").exists() or not MlflowClient(store).search_runs(["0"])


def test_a_model_of_the_wrong_output_size_is_one_line(store, data_root, tmp_path):
    folder = write_image_folder(tmp_path / "digits", data_root, per_class=5)
    result = invoke("train", *SHORT[:2], "--device", "cpu", "--model", "user_models:no_arguments", "--dataset", f"imagefolder:{folder}")
    assert_one_line_error(result, "outputs (2, 10) for a batch of 2, not (2, 3)")
    assert not Path("mlflow.db").exists() or not MlflowClient(store).search_runs(["0"])


def test_an_empty_image_folder_is_one_line(store, tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    assert_one_line_error(invoke("train", *SHORT, "--dataset", f"imagefolder:{tmp_path / 'empty'}"), str(tmp_path / "empty"))
