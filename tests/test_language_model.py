"""A character-level language model of a real text (the chapter itself): `--dataset text:` with the built-in causal
transformer learns below the uniform perplexity; its model continues a prompt, scores its logged test perplexity
again, serves over REST, and trains as one run under torchrun."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from commands import assert_one_line_error, invoke, train_run
from conftest import BIN, CHAPTER, model_server, subprocess_env
from mlflow import MlflowClient
from readback import only_run, tracking_uri

from deep_learning.core.config import TrainConfig
from deep_learning.core.data.splits import load_splits

TEXT_OPTIONS = (
    "--model",
    "transformer",
    "--block-size",
    "32",
    "--steps-per-epoch",
    "100",
    "--batch-size",
    "32",
    "--optimizer",
    "adamw",
    "--lr",
    "3e-3",
    "--device",
    "cpu",
)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "chapter.txt"
    path.write_text(CHAPTER.read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def text_run(text_file, module_store):
    return MlflowClient(module_store).get_run(train_run("--dataset", f"text:{text_file}", "--epochs", "2", *TEXT_OPTIONS))


def test_the_language_model_learns_below_the_uniform_perplexity(text_run, text_file, module_store, tmp_path):
    params, metrics = text_run.data.params, text_run.data.metrics
    vocabulary = sorted(set(text_file.read_text(encoding="utf-8")))
    assert (params["task"], params["metrics"], params["block_size"]) == ("sequence", "perplexity,accuracy", "32")
    assert text_run.info.run_name == "transformer-chapter-cpu lr=0.003 batch_size=32 optimizer=adamw"
    history = MlflowClient(module_store).get_metric_history(text_run.info.run_id, "val_perplexity")
    assert [metric.step for metric in history] == [1, 2] and history[1].value < history[0].value
    assert metrics["val_perplexity"] < len(vocabulary) / 3  # uniform guessing scores len(vocabulary)
    assert 0.2 < metrics["test_accuracy"] <= 1 and "test_perplexity" in metrics
    spec = json.loads(
        Path(MlflowClient(module_store).download_artifacts(text_run.info.run_id, "data_spec.json", str(tmp_path))).read_text()
    )
    assert spec["class_names"] == vocabulary and spec["input_dtype"] == "int64" and spec["input_shape"] == [32]
    artifacts = {item.path for item in MlflowClient(module_store).list_artifacts(text_run.info.run_id)}
    assert "learning_curves.png" in artifacts and "confusion_matrix.png" not in artifacts


def test_predict_continues_a_prompt_the_same_way_for_a_seed(text_run):
    run_id = text_run.info.run_id
    first = invoke("predict", run_id, "--prompt", "The training ", "--tokens", "40", "--seed", "3", "--device", "cpu")
    assert first.exit_code == 0, first.output
    text = first.stdout.rstrip("\n")
    assert text.startswith("The training ") and len(text) == len("The training ") + 40
    assert invoke("predict", run_id, "--prompt", "The training ", "--tokens", "40", "--seed", "3", "--device", "cpu").stdout == first.stdout
    cooler = invoke(
        "predict", run_id, "--prompt", "The training ", "--tokens", "40", "--seed", "4", "--temperature", "0.5", "--format", "json"
    )
    assert json.loads(cooler.stdout)["prompt"] == "The training " and json.loads(cooler.stdout)["text"] != text
    assert_one_line_error(invoke("predict", run_id, "--prompt", "€uro"), "'€' is not in the model's vocabulary")
    assert_one_line_error(invoke("predict", run_id, str(CHAPTER)), "A text run's model continues a prompt: give --prompt TEXT")


def test_evaluate_scores_the_logged_test_perplexity_again(text_run):
    result = invoke("evaluate", text_run.info.run_id, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"perplexity: {text_run.data.metrics['test_perplexity']:.4f}" in result.stdout
    assert f"accuracy: {text_run.data.metrics['test_accuracy']:.4f}" in result.stdout


@pytest.mark.server
def test_mlflow_models_serve_answers_for_the_token_model(text_run, text_file, module_store, tmp_path):
    config = TrainConfig(dataset=f"text:{text_file}", block_size=32)
    tokens = load_splits(config).test.tensors[0]
    tokens = tokens[:4].numpy()
    model_uri = f"runs:/{text_run.info.run_id}/model"
    with model_server(model_uri, module_store, tmp_path) as url:
        request = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"inputs": tokens.tolist()}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.asarray(json.loads(response.read())["predictions"])
        shorter = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps({"inputs": tokens[:, :10].tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(shorter, timeout=60) as response:
            served_shorter = np.asarray(json.loads(response.read())["predictions"])
    with tracking_uri(module_store):
        expected = mlflow.pyfunc.load_model(model_uri).predict(tokens)
    vocabulary = len(set(text_file.read_text(encoding="utf-8")))
    assert served.shape == (4, 32, vocabulary) and np.allclose(served, expected, atol=1e-4)
    # The sequence length is dynamic: a causal model's first positions see the same context whatever follows.
    assert served_shorter.shape == (4, 10, vocabulary) and np.allclose(served_shorter, served[:, :10], atol=1e-4)


def test_the_text_run_under_torchrun_logs_one_run(text_file, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "deep_learning",
            "train",
            "--dataset",
            f"text:{text_file}",
            "--epochs",
            "1",
            *TEXT_OPTIONS,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(MlflowClient(uri))
    assert run.info.status == "FINISHED" and (run.data.params["world_size"], run.data.params["task"]) == ("2", "sequence")
    assert run.info.run_name.startswith("transformer-chapter-cpu-x2") and "val_perplexity" in run.data.metrics


@pytest.mark.parametrize(
    "content, options, message",
    [
        ("", (), "is empty: a text dataset needs characters to learn from"),
        ("a short text", ("--block-size", "64"), "--block-size 64 is longer than the training part of"),
    ],
    ids=["empty", "block longer than the text"],
)
def test_a_text_that_cannot_be_learned_from_is_one_line(content, options, message, store, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(content)
    assert_one_line_error(invoke("train", "--dataset", f"text:{path}", "--model", "transformer", *options, "--device", "cpu"), message)
    assert_one_line_error(
        invoke("train", "--dataset", f"text:{CHAPTER}", "--device", "cpu"),
        "model 'mlp' takes float inputs, not integer tokens: train token data with --model transformer",
    )
    assert not Path("mlflow.db").exists() or not MlflowClient(store).search_runs(["0"])
