"""Using logged models: `evaluate` and `predict` from run ids, MLflow model URIs and state_dict files, on the CPU."""

from __future__ import annotations

import contextlib
import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
import torch.nn as nn
from commands import assert_one_line_error, invoke, train_run
from conftest import BIN, REPO, subprocess_env
from mlflow import MlflowClient
from PIL import Image

from deep_learning.core.data.files import load_dataset
from deep_learning.core.data.samples import as_tensors
from deep_learning.core.model import build_model
from deep_learning.experiment.inference import evaluate_model, load_model

CPU = torch.device("cpu")
EVALUATION_RUNS = "tags.\"deep_learning.kind\" = 'evaluation'"

# torch.save names each storage's device in the file, and torch.load puts it back there unless told
# otherwise. Tagging CPU storages with another device writes the file a save on that device writes.
_saving_as: list[str] = []
torch.serialization.register_package(
    0, lambda storage: _saving_as[-1] if _saving_as and storage.device.type == "cpu" else None, lambda storage, location: None
)


@contextlib.contextmanager
def saved_as_if_on(location: str):
    _saving_as.append(location)
    try:
        yield
    finally:
        _saving_as.pop()


@pytest.fixture(scope="module")
def run_id(module_store) -> str:
    return train_run("--epochs", "2", "--train-subset", "4000", "--device", "cpu")


@pytest.fixture(scope="module")
def source(run_id, module_store):
    return MlflowClient(module_store).get_run(run_id)


@pytest.fixture(scope="module")
def state_dict_path(run_id, module_store, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    return Path(MlflowClient(module_store).download_artifacts(run_id, "state_dict.pt", str(folder)))


@pytest.fixture(scope="module")
def registered_model(run_id) -> str:
    version = mlflow.register_model(f"runs:/{run_id}/model", "mnist-mlp")
    return f"models:/mnist-mlp/{version.version}"


@pytest.fixture(scope="module")
def test_images(data_root) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first 100 MNIST test images as uint8 pixels (N, 28, 28), as the float tensors runs evaluate, and labels."""
    test = load_dataset("mnist", train=False, root=data_root)
    images, labels = as_tensors(test)
    return test.data[:100], images[:100], labels[:100]


def _expected_predictions(state_dict_path: Path, images: torch.Tensor) -> tuple[list[int], list[float]]:
    model = build_model()
    model.load_state_dict(torch.load(state_dict_path, weights_only=True))
    with torch.inference_mode():
        probabilities = torch.softmax(model.eval()(images), dim=1)
    best, labels = probabilities.max(dim=1)
    return labels.tolist(), best.tolist()


@pytest.mark.parametrize("kind", ["run id", "runs URI", "registered model", "state_dict file"])
def test_evaluate_gives_the_logged_test_score(kind, request, run_id, source, state_dict_path, module_store):
    reference = {
        "run id": lambda: run_id,
        "runs URI": lambda: f"runs:/{run_id}/model",
        "registered model": lambda: request.getfixturevalue("registered_model"),
        "state_dict file": lambda: str(state_dict_path),
    }[kind]()
    result = invoke("evaluate", reference, "--device", "cpu", "--log")
    assert result.exit_code == 0, result.output
    assert f"accuracy: {source.data.metrics['test_accuracy']:.4f}" in result.stdout
    assert "Per true class" in result.stdout and "0 - zero" in result.stdout and "9 - nine" in result.stdout

    client = MlflowClient(module_store)
    [logged] = client.search_runs(["0"], EVALUATION_RUNS, order_by=["attributes.start_time DESC"], max_results=1)
    assert logged.info.run_id in result.stderr and logged.info.status == "FINISHED"
    assert logged.info.run_name == "evaluate-mlp-mnist-cpu"
    assert logged.data.metrics["test_accuracy"] == source.data.metrics["test_accuracy"]
    assert logged.data.metrics["test_loss"] == source.data.metrics["test_loss"]
    assert logged.data.params["model"] == reference and logged.data.tags["device.type"] == "cpu"
    expected_source = None if kind == "state_dict file" else run_id
    assert logged.data.tags.get("deep_learning.source_run_id") == expected_source

    report = json.loads(Path(client.download_artifacts(logged.info.run_id, "evaluation.json")).read_text())
    matrix = report["confusion_matrix"]
    assert sum(map(sum, matrix)) == report["num_samples"] == 10_000
    assert sum(matrix[label][label] for label in range(10)) / 10_000 == pytest.approx(report["accuracy"], abs=1e-6)
    for label, row in enumerate(matrix):
        assert report["per_class_accuracy"][label] == pytest.approx(row[label] / sum(row), abs=1e-6)
        assert logged.data.metrics[f"test_accuracy_class_{label}"] == report["per_class_accuracy"][label]


@pytest.mark.parametrize("location", ["cuda:0", "mps"])
def test_a_state_dict_saved_on_another_device_type_loads_on_the_cpu(location, state_dict_path, source, tmp_path):
    path = tmp_path / "state_dict.pt"
    with saved_as_if_on(location):
        torch.save(torch.load(state_dict_path, weights_only=True), path)
    if location.startswith("cuda") and not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)

    loaded = load_model(str(path), CPU)
    assert {tensor.device.type for tensor in loaded.model.state_dict().values()} == {"cpu"}
    evaluation = evaluate_model(loaded, "mnist", CPU)
    assert evaluation.accuracy == source.data.metrics["test_accuracy"]


def _narrower_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.mark.parametrize(
    "write, message",
    [
        (
            lambda path: torch.save({name: tensor.to("meta") for name, tensor in build_model().state_dict().items()}, path),
            "holds tensors without data (1.weight is on the meta device)",
        ),
        (
            lambda path: torch.save(_narrower_mlp().state_dict(), path),
            "is not a state_dict of the mlp model: 1.weight has shape (64, 784), not (128, 784)",
        ),
        (
            lambda path: torch.save(nn.Sequential(nn.Conv2d(1, 8, 3)).state_dict(), path),
            "is not a state_dict of the mlp model: 1.weight is missing",
        ),
        (lambda path: torch.save(build_model(), path), "holds pickled objects besides tensors"),
        (lambda path: torch.save([torch.zeros(3)], path), "holds a list, not a state_dict"),
        (lambda path: path.write_text("not tensors\n"), "is not a file written by torch.save"),
    ],
    ids=["meta device", "narrower layers", "other layers", "pickled model", "list", "text"],
)
def test_a_file_that_is_not_a_state_dict_of_the_model_is_one_line(write, message, tmp_path, module_store):
    path = tmp_path / "state_dict.pt"
    write(path)
    assert_one_line_error(invoke("evaluate", str(path)), f"{path} {message}")


@pytest.mark.parametrize(
    "reference, message",
    [
        ("missing/state_dict.pt", "No model 'missing/state_dict.pt': it is neither a file nor a run id"),
        ("0" * 32, f"No run '{'0' * 32}'"),
        ("models:/nope/1", "Cannot read model models:/nope/1"),
    ],
)
def test_a_model_that_cannot_be_found_is_one_line(reference, message, run_id):
    assert_one_line_error(invoke("evaluate", reference), message)


def test_an_unknown_run_id_is_one_line_in_a_real_process(run_id):
    result = subprocess.run(
        [sys.executable, "-m", "deep_learning", "evaluate", "f" * 32], capture_output=True, text=True, env=subprocess_env()
    )
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: No run '{'f' * 32}'"), result.stderr


def test_predict_names_the_digits_of_png_files(run_id, state_dict_path, test_images, tmp_path):
    pixels, images, labels = test_images
    paths = []
    for index, image in enumerate(pixels):
        paths.append(tmp_path / f"{index:03d}.png")
        Image.fromarray(image.numpy()).save(paths[-1])
    result = invoke("predict", run_id, *map(str, paths), "--device", "cpu", "--format", "json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert [prediction["image"] for prediction in predictions] == list(map(str, paths))
    predicted = [prediction["label"] for prediction in predictions]
    assert sum(label == truth for label, truth in zip(predicted, labels.tolist())) >= 0.7 * len(paths)

    expected_labels, expected_probabilities = _expected_predictions(state_dict_path, images)
    assert predicted == expected_labels
    assert [prediction["probability"] for prediction in predictions] == pytest.approx(expected_probabilities)
    assert all(prediction["class_name"].startswith(f"{prediction['label']} - ") for prediction in predictions)

    text = invoke("predict", run_id, str(paths[0]), "--device", "cpu")
    assert text.stdout == f"{paths[0]}: {predictions[0]['class_name']} ({predictions[0]['probability']:.4f})\n"


def _idx(pixels: torch.Tensor) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, pixels.dim()) + struct.pack(f">{pixels.dim()}I", *pixels.shape) + pixels.numpy().tobytes()


def test_predict_reads_idx_files_gzipped_or_not(state_dict_path, test_images, tmp_path):
    pixels, images, _ = test_images
    many, one = tmp_path / "images-idx3-ubyte.gz", tmp_path / "one-idx2-ubyte"
    many.write_bytes(gzip.compress(_idx(pixels[:10])))
    one.write_bytes(_idx(pixels[10]))
    result = invoke("predict", str(state_dict_path), str(many), str(one), "--device", "cpu", "--format", "json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert [prediction["image"] for prediction in predictions] == [f"{many}[{index}]" for index in range(10)] + [str(one)]
    assert [prediction["label"] for prediction in predictions] == _expected_predictions(state_dict_path, images[:11])[0]


def test_predict_converts_colour_images_of_other_sizes(state_dict_path, test_images, tmp_path):
    pixels, images, _ = test_images
    paths = []
    for index, image in enumerate(pixels[:30]):
        paths.append(tmp_path / f"{index:02d}.{'jpg' if index % 2 else 'png'}")
        Image.fromarray(image.numpy()).convert("RGB").resize((56, 56), Image.Resampling.NEAREST).save(paths[-1])
    result = invoke("predict", str(state_dict_path), *map(str, paths), "--device", "cpu", "--format", "json")
    assert result.exit_code == 0, result.output
    predicted = [prediction["label"] for prediction in json.loads(result.stdout)]
    expected = _expected_predictions(state_dict_path, images[:30])[0]
    assert sum(label == wanted for label, wanted in zip(predicted, expected)) >= 0.9 * len(paths)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"just some text\n", "is neither an image (PNG, JPEG, ...) nor an IDX file of images"),
        (gzip.compress(struct.pack(">BBBBI", 0, 0, 0x08, 1, 3) + b"\x01\x02\x03"), "is an IDX file of 1-dimensional data, not of images"),
        (struct.pack(">BBBBIII", 0, 0, 0x08, 3, 2, 28, 28) + bytes(100), "is a damaged IDX file"),
    ],
    ids=["text", "idx of labels", "truncated idx"],
)
def test_a_file_that_is_not_an_image_is_one_line_naming_it(content, message, run_id, tmp_path):
    path = tmp_path / "digit.png"
    path.write_bytes(content)
    assert_one_line_error(invoke("predict", run_id, str(path)), f"{path} {message}")


def test_mlproject_evaluate_entry_point_logs_into_the_run_it_adopts(run_id, source, module_store, tmp_path):
    result = subprocess.run(
        [
            str(BIN / "mlflow"),
            "run",
            str(REPO),
            "-e",
            "evaluate",
            "--env-manager",
            "local",
            "-P",
            f"model=runs:/{run_id}/model",
            "-P",
            "device=cpu",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(module_store)
    [adopted] = client.search_runs(["0"], "tags.\"mlflow.project.entryPoint\" = 'evaluate'")
    assert adopted.data.tags["deep_learning.kind"] == "evaluation"
    assert adopted.data.tags["deep_learning.source_run_id"] == run_id
    assert adopted.data.metrics["test_accuracy"] == source.data.metrics["test_accuracy"]
