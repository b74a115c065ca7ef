"""The toolkit in a real Jupyter kernel, as a reader of the chapter uses it: a notebook executed cell by cell with
nbclient trains with `fit`, displays the result, sweeps, compares, loads the best model and scores it, and is
interrupted from the client in the middle of a `fit`, which it then resumes."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from readback import PNG_SIGNATURE, logged_state_dict_bytes

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_cells() -> list[str]:
    """The cells of the README's notebook: its section's Python block, split where `# %%` marks a cell."""
    section = README.read_text(encoding="utf-8").split("## In a notebook\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    return ["# %%" + cell for cell in block.split("# %%") if cell.strip()]


FIT, FRAME, SWEEP, COMPARE, LOAD = range(5)  # the README's cells, in order
WIDGET = "application/vnd.jupyter.widget-view+json"
LONG_FIT = "long_data = utils.Subset(mnist, range(20_000))  # epochs long enough to interrupt the second\nlong = deep_learning.fit(mlp, long_data, val_data, epochs=5, seed=7)"
RESUME = "import mlflow\nkilled = mlflow.search_runs(filter_string=\"attributes.status = 'KILLED'\").run_id[0]\nresumed = deep_learning.fit(mlp, long_data, val_data, epochs=5, seed=7, resume=killed)"
UNINTERRUPTED = "straight = deep_learning.fit(mlp, long_data, val_data, epochs=5, seed=7)"
CELLS = [*readme_cells(), LONG_FIT, RESUME, UNINTERRUPTED, "print(resumed.run_id, straight.run_id)"]
TRAINING_CELLS = (FIT, SWEEP, 5, 6, 7)  # fit, sweep, the interrupted fit (its traceback is an error output), resume, fit


def outputs(cell, kind: str) -> list[dict]:
    return [output for output in cell.outputs if output.output_type == kind]


def stream(cell, name: str) -> str:
    return "".join(output.text for output in outputs(cell, "stream") if output.name == name)


def interrupt_after_the_first_epoch(client: NotebookClient, store: str, stop: threading.Event) -> None:
    """Interrupt the kernel once a new run has logged its first epoch (its checkpoint is then written)."""
    mlflow = MlflowClient(store)
    while not stop.is_set():
        running = mlflow.search_runs(["0"], "attributes.status = 'RUNNING' and metrics.val_loss > 0")
        if running:
            asyncio.run(client.km.interrupt_kernel())  # as the notebook's stop button does
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def notebook(module_store, tmp_path_factory):
    """The notebook, executed; the cell that trains for five epochs interrupted from the client after its first."""
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    folder = tmp_path_factory.mktemp("notebook")
    client = NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    interrupted = None
    with client.setup_kernel():
        for index, cell in enumerate(book.cells):
            if index != CELLS.index(LONG_FIT):
                client.execute_cell(cell, index)
                continue
            stop = threading.Event()
            watcher = threading.Thread(target=interrupt_after_the_first_epoch, args=(client, module_store, stop))
            watcher.start()
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as error:
                interrupted = error
            finally:
                stop.set()
                watcher.join()
    return book, interrupted


def test_the_readme_notebook_has_its_five_cells():
    cells = readme_cells()
    assert len(cells) == 5 and cells[FIT].rstrip().endswith("result") and cells[LOAD].rstrip().endswith('.4f}")')


def test_fit_shows_progress_and_its_result_as_a_table_with_curves(notebook):
    book, _ = notebook
    cell = book.cells[FIT]
    widgets = [output for output in outputs(cell, "display_data") if WIDGET in output.data]
    assert widgets and "Epoch [2/2] | loss:" in stream(cell, "stdout")  # tqdm's widget (ipywidgets is here), then the lines
    assert "Epoch 1/2 |" not in stream(cell, "stdout")
    (shown,) = [output for output in outputs(cell, "execute_result")]
    page = shown.data["text/html"]
    assert page.count("<tr>") == 3 and "<th>val_accuracy</th>" in page
    encoded = page.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(encoded)[:8] == PNG_SIGNATURE
    assert shown.data["text/plain"].startswith("ExperimentResult: run ")
    frame = outputs(book.cells[FRAME], "execute_result")[0].data
    assert "train_loss" in frame["text/html"] and "epoch_seconds" in frame["text/html"]


def test_without_ipywidgets_the_bar_is_text_and_nothing_warns(module_store, tmp_path):
    hidden = "import sys\nsys.modules['ipywidgets'] = None  # as in a kernel without ipywidgets: importing it fails"
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (hidden, readme_cells()[FIT])])
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    cell = book.cells[1]
    assert "Epoch 1/2 |" in stream(cell, "stdout") and "Epoch [2/2] | loss:" in stream(cell, "stdout")
    assert not [output for output in outputs(cell, "display_data") if WIDGET in output.data]
    assert stream(cell, "stderr") == ""  # tqdm.auto's "IProgress not found" (MLflow imports it) is kept out


def test_training_cells_say_nothing_on_stderr(notebook):
    book, _ = notebook
    for index in TRAINING_CELLS:
        assert stream(book.cells[index], "stderr") == "", (CELLS[index], stream(book.cells[index], "stderr"))


def test_a_sweep_is_compared_and_its_best_model_scores_on_the_test_split(notebook, module_store):
    book, _ = notebook
    sweep_page = outputs(book.cells[SWEEP], "execute_result")[0].data["text/html"]
    assert "2 runs in 1 groups" in sweep_page and "<table>" in sweep_page
    comparison = outputs(book.cells[COMPARE], "execute_result")[0].data["text/html"]
    assert "<td>params.seed</td>" in comparison and "data:image/png;base64," in comparison
    accuracy = float(stream(book.cells[LOAD], "stdout").split()[-1])
    assert 0.5 < accuracy <= 1.0


def test_an_interrupted_fit_is_killed_then_resumed_to_the_uninterrupted_runs_bytes(notebook, module_store):
    book, interrupted = notebook
    assert interrupted is not None, "the cell was not interrupted"
    message = str(interrupted)
    assert "Interrupted" in message and "is KILLED in MLflow" in message and "resume=" in message, message
    client = MlflowClient(module_store)
    resumed_id, straight_id = stream(book.cells[-1], "stdout").split()
    resumed = client.get_run(resumed_id)
    assert resumed.info.status == "FINISHED"
    assert sorted(metric.step for metric in client.get_metric_history(resumed_id, "val_loss")) == list(range(1, 6))
    assert logged_state_dict_bytes(client, resumed_id) == logged_state_dict_bytes(client, straight_id)
