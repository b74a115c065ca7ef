"""The run's models as MLflow 3 LoggedModels: the final `model` and the kept checkpoints, each pickle-free
(torch.export's "pt2") and loadable by MLflow's pyfunc and `mlflow models serve` on any host.

How a model is shown to MLflow (its CPU copy, `Served` wrapper and `Example`), written, uploaded and tagged. A checkpoint's
LoggedModel is created (PENDING, with its epoch's metrics linked) when the checkpoint is saved, which costs the
training thread nothing; its weights are exported and uploaded once the run knows which checkpoints it keeps.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, RunInfo
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.types.schema import Schema, TensorSpec
from mlflow.utils import environment as mlflow_environment

from deep_learning.core.batches import ExampleInputs, forward, predictions, to_device
from deep_learning.core.errors import first_line
from deep_learning.tracking.stores import unreachable

MODEL_ARTIFACT = "model"
PICKLE_FREE_FORMAT = "pt2"  # torch.export's
REQUIREMENTS_CHECK = "warn_dependency_requirement_mismatches"
# Where pyfunc loads a pt2 model. MLflow's default picks CUDA whenever a GPU is present, and its loader refuses a
# torch.export program on another device than its weights were saved on, which is the CPU: the models are saved there.
PT2_PYFUNC_DEVICE = "cpu"
EPOCH_TAG = "deep_learning.epoch"  # on a checkpoint's LoggedModel: its epoch
BEST_TAG = "deep_learning.best"  # "true" on the LoggedModel of the best kept checkpoint, by the monitored metric
BEST_MODEL_TAG = "deep_learning.best_model_id"  # on the run: that LoggedModel's id
MONITOR_TAG = "deep_learning.monitor"  # on the best one: the metric and its direction, as "val_loss min"


def checkpoint_model_name(epoch: int) -> str:
    return f"checkpoint-{epoch:04d}"


@dataclasses.dataclass(frozen=True)
class Example:
    """What a model is shown to MLflow with: a few inputs (numpy; a tuple of arrays for several inputs), the signature
    of inputs to outputs (-1 where a dimension may vary: the batch, a token sequence's length, what varies in the data),
    and the names of several inputs (empty for one)."""

    inputs: np.ndarray | tuple[np.ndarray, ...]
    signature: Any
    input_names: tuple[str, ...] = ()

    @classmethod
    def of(cls, served: torch.nn.Module, example_inputs: Any, varying_dims: Sequence[set[int]] = ()) -> Example:
        names, tensors = _named_inputs(example_inputs)
        arrays = tuple(tensor.detach().cpu().numpy() for tensor in tensors)
        with torch.inference_mode():
            output = served(*(torch.from_numpy(array) for array in arrays)).numpy()
        specs = [
            TensorSpec(
                array.dtype,
                tuple(-1 if dim == 0 or dim in _dynamic(array, varying_dims, index) else size for dim, size in enumerate(array.shape)),
                name,
            )
            for index, (name, array) in enumerate(zip(names, arrays))
        ]
        signature = ModelSignature(inputs=Schema(specs), outputs=Schema([TensorSpec(output.dtype, (-1, *output.shape[1:]))]))
        if len(arrays) == 1:
            return cls(arrays[0], signature)
        return cls(arrays, signature, tuple(names))


def _named_inputs(inputs: Any) -> tuple[list[str | None], list[torch.Tensor]]:
    """A batch's inputs as MLflow's PyTorch flavour passes them, positionally: their names (None for a lone tensor) and tensors."""
    if isinstance(inputs, torch.Tensor):
        return [None], [inputs]
    if isinstance(inputs, dict):
        return list(map(str, inputs)), list(inputs.values())
    return [f"input_{index}" for index in range(len(inputs))], list(inputs)


def _dynamic(array: np.ndarray, varying_dims: Sequence[set[int]], index: int) -> set[int]:
    """The dimensions of one input, besides the batch, that may vary: token ids' positions, and those the data varies."""
    tokens = np.issubdtype(array.dtype, np.integer)
    varying = varying_dims[index] if index < len(varying_dims) else set()
    return set(range(1, array.ndim)) if tokens else varying


class Served(torch.nn.Module):
    """A model as MLflow's PyTorch flavour calls it: tensors in, positionally (a dict's by its keys' order), and one tensor
    out (its predictions: the tensor, or the `logits` of an output object)."""

    def __init__(self, model: torch.nn.Module, keywords: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = model
        self.keywords = tuple(keywords)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        output = self.model(**dict(zip(self.keywords, tensors))) if self.keywords else self.model(*tensors)
        return predictions(output)


def served_model(cpu_model: torch.nn.Module, example_inputs: Any) -> torch.nn.Module:
    """The model itself where MLflow's flavour can call it as it is, else wrapped in `Served`."""
    keywords = tuple(map(str, example_inputs)) if isinstance(example_inputs, dict) else ()
    with torch.inference_mode():
        output = forward(cpu_model, example_inputs)
    return cpu_model if isinstance(output, torch.Tensor) and not keywords else Served(cpu_model, keywords)


def servable(model: torch.nn.Module, example: ExampleInputs) -> tuple[torch.nn.Module, torch.nn.Module, Example]:
    """A CPU copy of the model, the module MLflow's flavour logs (the copy, or it wrapped in `Served`), and its Example."""
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    cpu_inputs = to_device(example.inputs, torch.device("cpu"))
    served = served_model(cpu_model, cpu_inputs)
    return cpu_model, served, Example.of(served, cpu_inputs, example.varying_dims)


def same_weights(weights: dict[str, torch.Tensor], others: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts hold the same tensors."""
    return weights.keys() == others.keys() and all(torch.equal(weights[key].cpu(), others[key]) for key in weights)


def inputs_tag(model_name: str, example: Example) -> str:
    """The logged model's inputs, as its run's tag says them; for several, a warning that pyfunc takes one array."""
    if not example.input_names:
        return "tensor"
    names = ", ".join(example.input_names)
    print(
        f"Warning: {model_name} takes {len(example.input_names)} inputs ({names}); the logged model takes them positionally, in that "
        "order, through mlflow.pytorch.load_model, but MLflow's pyfunc and `mlflow models serve` pass one array to a PyTorch model.",
        file=sys.stderr,
        flush=True,
    )
    return f"positional: {names}"


@contextlib.contextmanager
def _requirements_check_skipped() -> Iterator[None]:
    """Skip MLflow's check of a model's pip requirements against this environment: it scans every installed
    distribution (~0.4 s, the first time in a process), and `model_requirements` reads them from this environment."""
    check = getattr(mlflow_environment, REQUIREMENTS_CHECK, None)
    if check is None:  # another MLflow: keep its behaviour
        yield
        return
    setattr(mlflow_environment, REQUIREMENTS_CHECK, lambda requirements: None)
    try:
        yield
    finally:
        setattr(mlflow_environment, REQUIREMENTS_CHECK, check)


def log_model(
    client: MlflowClient,
    run: RunInfo,
    cpu_model: torch.nn.Module,
    example: Example,
    folder: str,
    *,
    name: str = MODEL_ARTIFACT,
    step: int = 0,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    registered_name: str = "",
) -> tuple[str, str]:
    """Log `cpu_model` as a LoggedModel of the run (`runs:/RUN/<name>`), its files written in `folder`; return its id and
    format ("pt2" or "pickle")."""
    model_id = create_model(client, run, name, step, params, tags)
    model_format = save_model(client, model_id, run.run_id, cpu_model, example, folder)
    if registered_name:
        mlflow.register_model(f"models:/{model_id}", registered_name)
    return model_id, model_format


def create_model(
    client: MlflowClient, run: RunInfo, name: str, step: int, params: dict[str, str] | None, tags: dict[str, str] | None
) -> str:
    """A PENDING LoggedModel of the run, its output at `step` (the UI lists it with the run); return its id."""
    model = client.create_logged_model(run.experiment_id, name=name, source_run_id=run.run_id, params=params, tags=tags)
    client.log_outputs(run.run_id, [LoggedModelOutput(model.model_id, step=step)])
    return model.model_id


def save_model(
    client: MlflowClient, model_id: str, run_id: str, cpu_model: torch.nn.Module, example: Example, folder: str, exports: bool = True
) -> str:
    """Write the model's files in `folder`, upload them into LoggedModel `model_id` and mark it READY; return the format.

    Pickle-free with torch.export ("pt2"), which pyfunc loads on the CPU on any host; a model that does not
    export (or, with `exports` false, is known not to) is saved in MLflow's pickle format instead, with a
    warning saying why, and pyfunc loads it on the GPU where there is one.
    """
    if not exports:
        _upload(client, model_id, run_id, _written(folder, cpu_model, example, "pickle"))
        return "pickle"
    try:
        _upload(client, model_id, run_id, _written(folder, cpu_model, example, PICKLE_FREE_FORMAT))
        return PICKLE_FREE_FORMAT
    except Exception as error:
        if isinstance(error, MlflowException) or unreachable(error):
            client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
            raise
        print(
            f"Warning: torch.export cannot export {type(cpu_model).__name__} ({first_line(error)[:200]}); the model is logged in "
            f"MLflow's pickle format, which runs pickled code when loaded. state_dict.pt holds the weights without pickled code.",
            file=sys.stderr,
            flush=True,
        )
    _upload(client, model_id, run_id, _written(folder, cpu_model, example, "pickle"))
    return "pickle"


def copy_model(client: MlflowClient, model_id: str, run_id: str, folder: str) -> None:
    """Give LoggedModel `model_id` the files that `save_model` wrote in `folder` for a model of the same weights,
    without exporting it again."""
    _upload(client, model_id, run_id, os.path.join(folder, MODEL_ARTIFACT))


def _written(folder: str, cpu_model: torch.nn.Module, example: Example, model_format: str) -> str:
    """The model saved by MLflow's PyTorch flavour in `folder`/model (replacing what was there); return that path."""
    path = os.path.join(folder, MODEL_ARTIFACT)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    with _requirements_check_skipped():
        mlflow.pytorch.save_model(
            cpu_model,
            path,
            serialization_format=model_format,
            signature=example.signature,
            input_example=example.inputs,
            pip_requirements=model_requirements(),
        )
    if model_format == PICKLE_FREE_FORMAT:
        # A pickled module moves with .to(device), so pyfunc's own choice (CUDA where available) suits it; a pt2 program does not.
        mlflow_model = Model.load(path)
        mlflow_model.flavors[mlflow.pyfunc.FLAVOR_NAME][mlflow.pyfunc.MODEL_CONFIG]["device"] = PT2_PYFUNC_DEVICE
        mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))
    return path


def _upload(client: MlflowClient, model_id: str, run_id: str, path: str) -> None:
    """Upload the saved model at `path` into LoggedModel `model_id` of run `run_id`, as Model.log does for a model it
    creates (its MLmodel naming that LoggedModel), and mark it READY."""
    mlflow_model = Model.load(path)
    mlflow_model.artifact_path = client.get_logged_model(model_id).artifact_location
    mlflow_model.model_uuid = mlflow_model.model_id = model_id
    mlflow_model.run_id = run_id
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))
    client.log_model_artifacts(model_id, path)
    client.finalize_logged_model(model_id, LoggedModelStatus.READY)


def checkpoint_models(client: MlflowClient, run: RunInfo) -> dict[int, str]:
    """The run's checkpoint LoggedModels by epoch (a resumed run's, from before it stopped)."""
    found, token = {}, None
    while True:
        page = client.search_logged_models([run.experiment_id], filter_string=f"source_run_id = '{run.run_id}'", page_token=token)
        found.update({int(model.tags[EPOCH_TAG]): model.model_id for model in page if EPOCH_TAG in model.tags})
        token = page.token
        if not token:
            return found


def mark_best(client: MlflowClient, run_id: str, model_id: str, monitor: str) -> None:
    """Tag the best checkpoint's LoggedModel (the UI's Models tab shows it) and name it on the run."""
    client.set_logged_model_tags(model_id, {BEST_TAG: "true", MONITOR_TAG: monitor})
    client.set_tag(run_id, BEST_MODEL_TAG, model_id)


def model_requirements() -> list[str]:
    """Explicit pip requirements of the logged model (inferring them would cost seconds)."""
    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
