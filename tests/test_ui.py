"""The MLflow UI really shows our runs: two CLI runs on a real `mlflow server`, read by headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
from commands import train_run
from mlflow import MlflowClient
from PIL import Image
from readback import assert_valid_png

pytestmark = pytest.mark.server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_OPTIONS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
)
WINDOW = (1400, 900)
EXPERIMENT = "ui-check"


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; without it the UI cannot be checked, and that is a failure, not a skip."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get update && apt-get install -y chromium`) to check the MLflow UI."
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def server_runs(chromium, mlflow_server, data_root, tmp_path_factory) -> dict:
    """Two short CPU runs made with the CLI on the shared server, in an experiment of their own."""
    folder = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        monkeypatch.setenv("DEEP_LEARNING_DATA_ROOT", str(data_root))
        monkeypatch.setenv("DEEP_LEARNING_OFFLINE", "1")
        for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
            monkeypatch.delenv(name, raising=False)
        run_ids = [
            train_run("--epochs", "1", "--train-subset", "500", "--device", "cpu"),
            train_run("--epochs", "1", "--train-subset", "500", "--device", "cpu", "--dataset", "fashion-mnist"),
        ]
    client = MlflowClient(mlflow_server)
    runs = [client.get_run(run_id) for run_id in run_ids]
    return {"url": mlflow_server, "runs": runs, "experiment_id": runs[0].info.experiment_id, "folder": folder}


def open_page(url: str, *options: str) -> str:
    """Load `url` in a fresh headless Chromium profile; return what Chromium printed (the DOM, with --dump-dom)."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [str(CHROMIUM), *CHROMIUM_OPTIONS, f"--user-data-dir={profile}", *options, url], capture_output=True, text=True, timeout=180
        )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def visible_text(dom: str) -> str:
    """The DOM's text without tags, scripts or styles, whitespace collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL | re.IGNORECASE)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def compare_url(server: dict) -> str:
    """The UI's compare view of the runs, with the route and query the UI itself builds (MLflow 3.17)."""
    run_ids = json.dumps([run.info.run_id for run in server["runs"]], separators=(",", ":"))
    experiments = json.dumps([server["experiment_id"]], separators=(",", ":"))
    return f"{server['url']}/#/compare-runs?runs={quote(run_ids)}&experiments={quote(experiments)}"


def test_the_runs_page_lists_both_runs(server_runs):
    text = visible_text(open_page(f"{server_runs['url']}/#/experiments/{server_runs['experiment_id']}/runs", "--dump-dom"))
    assert EXPERIMENT in text
    for run in server_runs["runs"]:
        assert run.info.run_name in text, run.info.run_name
    assert [run.info.run_name for run in server_runs["runs"]] == ["mlp-mnist-cpu", "mlp-fashion-mnist-cpu"]


def test_the_compare_view_shows_the_runs_side_by_side_with_their_devices(server_runs):
    text = visible_text(open_page(compare_url(server_runs), "--dump-dom"))
    runs = server_runs["runs"]
    assert "Comparing 2 Runs" in text
    assert f"Run ID: {runs[0].info.run_id} {runs[1].info.run_id}" in text
    assert f"Run Name: {runs[0].info.run_name} {runs[1].info.run_name}" in text
    device_types = [run.data.tags["device.type"] for run in runs]
    assert device_types == ["cpu", "cpu"]
    assert f"device.type {' '.join(device_types)}" in text  # the row of the tags table
    assert f"device.name {' '.join(run.data.tags['device.name'] for run in runs)}" in text


def test_a_screenshot_of_the_compare_view(server_runs):
    screenshot = server_runs["folder"] / "compare-runs.png"
    width, height = WINDOW
    open_page(compare_url(server_runs), f"--screenshot={screenshot}", f"--window-size={width},{height}")
    assert_valid_png(screenshot, WINDOW, WINDOW)
    with Image.open(screenshot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=width * height)
    assert len(colours) > 100, f"{screenshot} is nearly blank"  # text, plots and tables, not an empty page
