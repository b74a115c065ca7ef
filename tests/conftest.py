"""Shared fixtures: real MNIST in a writable data root, real MLflow stores, a real mlflow server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTER = REPO.parent / "shared" / "seed" / "chapter-2.7-training-loop.txt"
# Raw IDX files to copy from: $DEEP_LEARNING_TEST_DATA, else the shared data folder beside the repo.
SOURCE_DATA = Path(os.environ.get("DEEP_LEARNING_TEST_DATA", REPO.parent / "shared" / "data"))
BIN = Path(sys.executable).parent
SERVER_SECONDS = 120
# pytest-xdist's workers share the machine's cores: each worker's torch, and every process it starts, takes its share
# of them rather than all of them (oversubscribed OpenMP threads spin against each other).
if WORKERS := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // WORKERS))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable data root holding MNIST and Fashion-MNIST, placed through the package's own import."""
    from deep_learning.core.data.files import DATASET_CLASSES, import_raw_files

    root = tmp_path_factory.mktemp("data")
    for dataset, dataset_class in DATASET_CLASSES.items():
        import_raw_files(dataset, SOURCE_DATA / dataset_class.__name__ / "raw", root)
    return root


def use_store(folder: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Work in `folder` with a sqlite tracking store there and the test data root; return the store's URI."""
    monkeypatch.chdir(folder)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DEEP_LEARNING_DATA_ROOT", str(data_root))
    monkeypatch.setenv("DEEP_LEARNING_OFFLINE", "1")
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    return uri


@pytest.fixture
def store(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sqlite tracking store in a temporary working directory; returns its URI."""
    return use_store(tmp_path, data_root, monkeypatch)


@pytest.fixture(scope="module")
def module_store(tmp_path_factory: pytest.TempPathFactory, data_root: Path):
    """A sqlite tracking store shared by one test module, for runs that several of its tests read."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield use_store(tmp_path_factory.mktemp("store"), data_root, monkeypatch)


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment for a child process: this interpreter's bin first on PATH, plus overrides."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A real `mlflow server` process on 127.0.0.1."""

    url: str
    port: int
    process: subprocess.Popen


def start_mlflow_server(folder: Path, port: int | None = None) -> Server:
    """Start `mlflow server` with a sqlite backend in `folder` (reusing its database) and wait until it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=folder,
        stdout=open(folder / "server.log", "a"),
        stderr=subprocess.STDOUT,
        env=subprocess_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        start_new_session=True,  # its workers share its process group, so one kill stops them all
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return Server(url, port, process)
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_mlflow_server(Server(url, port, process))
            pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)


def kill_mlflow_server(server: Server) -> None:
    """Kill the server and its workers at once, as a crash would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def stop_mlflow_server(server: Server) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_mlflow_server(server)


@contextlib.contextmanager
def model_server(model_uri: str, store: str, folder: Path):
    """A real `mlflow models serve` of `model_uri` on 127.0.0.1, as a GPU host would choose its device; yields its URL."""
    port = free_port()
    log = folder / "serve.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=subprocess_env(MLFLOW_TRACKING_URI=store, MLFLOW_DEFAULT_PREDICTION_DEVICE="cuda"),
            start_new_session=True,  # uvicorn shares its process group, so one kill stops both
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_SECONDS
        while not _answers(f"{url}/ping"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server` shared by the session; yields its URL."""
    server = start_mlflow_server(tmp_path_factory.mktemp("server"))
    yield server.url
    stop_mlflow_server(server)
