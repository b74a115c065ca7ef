"""No host sync on the hot path: our passes read device data back to the host once, never per batch.

Counted from the operations themselves (see deep_learning.benchmarks.syncs), so these run on the CPU;
on a CUDA machine the runtime's own sync count is checked too.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
from torchmetrics import MetricCollection

from deep_learning.benchmarks.syncs import COUNTED_BATCHES, count_host_reads, cuda_syncs, host_reads
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.splits import load_splits
from deep_learning.core.metrics import METRIC_NAMES, accuracy_metric, build_metrics
from deep_learning.core.model import build_model
from deep_learning.core.optimization import build_optimizer, build_schedule, lr_scheduler
from deep_learning.core.precision import grad_scaler, with_amp
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.training import evaluate, train
from deep_learning.experiment.controls import stepper_for

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def train_dl(data_root):
    config = TrainConfig(train_subset=1000)
    return make_loaders(config, load_splits(config, data_root), CPU)[0]


@pytest.fixture(params=[True, False], ids=["deterministic", "nondeterministic"])
def algorithms(request):
    """torchmetrics counts classes differently when deterministic algorithms are off (bincount, a read on CUDA)."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(request.param)
    yield request.param
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def test_our_passes_read_once_while_the_chapters_reads_every_batch(train_dl, algorithms):
    rows = {(row["loop"], row["pass"]): row for row in host_reads(CPU, train_dl)}
    for name in ("train", "evaluate"):
        ours = rows["ours", name]
        assert (ours["per_batch"], ours["per_pass"], ours["kinds"]) == (0, 1, {"tolist": 1}), ours
    # The counter sees what the chapter's loop reads: loss.item() every training step, and torchmetrics'
    # bincount every update when deterministic algorithms are off.
    chapter_train = rows["chapter", "train"]
    assert chapter_train["per_batch"] == (1 if algorithms else 2), chapter_train
    assert chapter_train["kinds"]["item"] == COUNTED_BATCHES[1] + 1


def _reads_per_pass(train_dl, amp: str, optimizer_for) -> list[int]:
    counts = []
    for length in COUNTED_BATCHES:
        set_seed(0)
        model = build_model()
        batches = list(itertools.islice(train_dl, length))
        optimizer, scaler = optimizer_for(model), grad_scaler(CPU, amp)
        counts.append(
            count_host_reads(
                lambda: train(
                    with_amp(model, CPU, amp), batches, nn.CrossEntropyLoss(), optimizer, accuracy_metric(), CPU, grad_scaler=scaler
                )
            ).total()
        )
    return counts


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_steps_read_nothing_per_batch(train_dl, amp):
    assert _reads_per_pass(train_dl, amp, lambda model: build_optimizer(model.parameters(), TrainConfig(lr=0.1, amp=amp))) == [1, 1]


def test_the_fused_sgd_is_what_spares_fp16_a_read_every_step(train_dl):
    # GradScaler.step reads its inf flag back every step unless the optimizer unscales on the device.
    plain = _reads_per_pass(train_dl, "fp16", lambda model: torch.optim.SGD(model.parameters(), lr=0.1))
    assert plain == [1 + length for length in COUNTED_BATCHES]


def test_fused_fp16_sgd_updates_exactly_as_the_unfused_one(train_dl):
    weights = {}
    for fused in (False, True):
        set_seed(0)
        model = build_model()
        optimizer = (
            build_optimizer(model.parameters(), TrainConfig(lr=0.1, amp="fp16")) if fused else torch.optim.SGD(model.parameters(), lr=0.1)
        )
        batches = list(itertools.islice(train_dl, COUNTED_BATCHES[1]))
        train(
            with_amp(model, CPU, "fp16"),
            batches,
            nn.CrossEntropyLoss(),
            optimizer,
            accuracy_metric(),
            CPU,
            grad_scaler=grad_scaler(CPU, "fp16"),
        )
        weights[fused] = model.state_dict()
    assert all(torch.equal(weights[False][name], weights[True][name]) for name in weights[False])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_steps_make_no_synchronizing_call(data_root):
    device = torch.device("cuda")
    config = TrainConfig(train_subset=1000)
    cuda_train_dl = make_loaders(config, load_splits(config, data_root), device)[0]
    rows = {(row["loop"], row["pass"]): row for row in host_reads(device, cuda_train_dl)}
    assert rows["ours", "train"]["cuda_syncs"]["per_batch"] == 0
    assert rows["ours", "evaluate"]["cuda_syncs"]["per_batch"] == 0
    assert rows["chapter", "train"]["cuda_syncs"]["per_batch"] >= 1  # loss.item() every step: the count sees syncs
    assert cuda_syncs(lambda: torch.ones(1, device=device).item()) == 1


@pytest.mark.parametrize("model_name", ["cnn", "transformer"])
def test_new_models_with_every_metric_read_once_per_pass(train_dl, model_name, algorithms):
    # Every built-in metric in one collection, as `--metrics` builds it: one read per pass, none per batch,
    # with deterministic algorithms (torchmetrics' f1/precision/recall use bincount, a read, without them).
    metrics = MetricCollection(build_metrics(METRIC_NAMES, 10), compute_groups=False)
    counts = []
    for length in COUNTED_BATCHES:
        set_seed(0)
        model = build_model(model_name)
        batches = list(itertools.islice(train_dl, length))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        counts.append(
            (
                count_host_reads(lambda: train(model, batches, nn.CrossEntropyLoss(), optimizer, metrics, CPU)),
                count_host_reads(lambda: evaluate(model, batches, nn.CrossEntropyLoss(), metrics, CPU)),
            )
        )
    for train_reads, evaluate_reads in counts:
        for reads in (train_reads, evaluate_reads):
            if algorithms:
                assert dict(reads) == {"tolist": 1}, reads
            else:
                assert reads["tolist"] == 1 and set(reads) <= {"tolist", "bincount"}, reads


@pytest.mark.parametrize(("optimizer_name", "amp"), [("sgd", "off"), ("sgd", "fp16"), ("adamw", "bf16"), ("adamw", "fp16")])
def test_clipping_accumulation_and_a_schedule_read_nothing_per_batch(train_dl, optimizer_name, amp):
    config = TrainConfig(
        optimizer=optimizer_name, amp=amp, lr_schedule="cosine", warmup_epochs=1, epochs=2, grad_clip_norm=0.5, accumulate_batches=2
    )
    counts = []
    for length in COUNTED_BATCHES:
        set_seed(0)
        model = build_model()
        batches = list(itertools.islice(train_dl, length))
        optimizer, scaler = build_optimizer(model.parameters(), config), grad_scaler(CPU, amp)
        stepper = stepper_for(config, optimizer, scaler, lr_scheduler(optimizer, build_schedule(config, length)), 0)
        counts.append(
            count_host_reads(
                lambda: train(with_amp(model, CPU, amp), batches, nn.CrossEntropyLoss(), optimizer, accuracy_metric(), CPU, stepper=stepper)
            )
        )
        assert stepper.epoch_stats["grad_norm_max"] > 0 and stepper.global_step == (length + 1) // 2
    assert [dict(reads) for reads in counts] == [{"tolist": 1}, {"tolist": 1}]
