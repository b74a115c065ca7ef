"""The tasks beyond classification: their metrics equal torchmetrics', read the host once per pass, and the task is
told from a batch's target and the model's output; an output that does not fit is one line."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MultilabelExactMatch, MultilabelF1Score, MultilabelPrecision, MultilabelRecall
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score
from torchmetrics.text import Perplexity

from deep_learning.benchmarks.syncs import COUNTED_BATCHES, count_host_reads
from deep_learning.core.batches import ModelLoss, num_samples, output_and_loss, predictions, to_device
from deep_learning.core.errors import ConfigError
from deep_learning.core.tasks import TASKS, check_output, infer_task
from deep_learning.core.training import evaluate, train

CPU = torch.device("cpu")


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _compare(ours, reference, batches, exact: bool) -> None:
    for prediction, target in batches:
        ours.update(prediction, target)
        reference.update(prediction, target)
        if exact:
            assert torch.equal(ours.compute(), reference.compute())
        else:
            assert ours.compute().item() == pytest.approx(reference.compute().item(), rel=1e-5, abs=1e-6)


def _multilabel_batches(count: int = 12, labels: int = 6):
    generator = _generator()
    for batch in range(count):
        logits = torch.randn(32, labels, generator=generator) * 2
        target = (torch.rand(32, labels, generator=generator) > 0.6).long()
        target[:, -1] = 0  # a label no sample has
        target[: batch * 2] = (logits[: batch * 2] > 0).long()  # the scores climb
        yield logits, target


@pytest.mark.parametrize(
    "name, reference, exact",
    [
        ("f1", MultilabelF1Score, False),
        ("precision", MultilabelPrecision, False),
        ("recall", MultilabelRecall, False),
        ("accuracy", MultilabelExactMatch, True),
    ],
)
def test_multilabel_metrics_equal_torchmetrics(name, reference, exact):
    # Ours divides in float64, torchmetrics in float32: the scores agree to float32's last bit, the exact match exactly.
    _compare(TASKS["multilabel"].build_metrics([name], 6)[name], reference(6), _multilabel_batches(), exact=exact)


@pytest.mark.parametrize("name, reference", [("mse", MeanSquaredError), ("mae", MeanAbsoluteError), ("r2", R2Score)])
@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_metrics_equal_torchmetrics(name, reference, outputs):
    generator = _generator(outputs)
    batches = []
    for _ in range(10):
        target = torch.randn(40, outputs, generator=generator) * 50 + 150  # diabetes-like targets: far from zero
        batches.append((target + torch.randn(40, outputs, generator=generator) * 30, target))
    if outputs == 1 and name != "r2":
        batches = [(prediction.squeeze(1), target.squeeze(1)) for prediction, target in batches]
    _compare(TASKS["regression"].build_metrics([name], outputs)[name], reference(), batches, exact=False)


def _sequence_batches(count: int = 8, vocabulary: int = 11):
    generator = _generator()
    for batch in range(count):
        logits = torch.randn(4, 7, vocabulary, generator=generator)
        target = torch.randint(0, vocabulary, (4, 7), generator=generator)
        target[0, : batch % 5] = -100  # padding, left out
        target[1] = logits[1].argmax(dim=-1)
        yield logits, target


def test_perplexity_and_token_accuracy_equal_torchmetrics():
    metrics = TASKS["sequence"].build_metrics(["perplexity", "accuracy"], 11)
    _compare(metrics["perplexity"], Perplexity(ignore_index=-100), _sequence_batches(), exact=False)
    token_accuracy = MulticlassAccuracy(11, average="micro", ignore_index=-100)
    for logits, target in _sequence_batches():
        metrics["accuracy"].update(logits, target)
        token_accuracy.update(logits.permute(0, 2, 1), target)
    assert metrics["accuracy"].compute().item() == pytest.approx(token_accuracy.compute().item(), abs=1e-7)


class _Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, inputs):
        return self.linear(inputs)


class _TwoInputs(nn.Module):
    """Floats and tokens in, one multi-label logit vector out."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.embedding = nn.Linear(5, 4), nn.Embedding(9, 4)

    def forward(self, features, tokens):
        return self.linear(features) + self.embedding(tokens).mean(dim=1)


class _TinyLanguageModel(nn.Module):
    """Dict inputs, and a Hugging Face-style output with its own loss when given labels."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding, self.head = nn.Embedding(9, 8), nn.Linear(8, 9)

    def forward(self, input_ids, mask, labels=None):
        logits = self.head(self.embedding(input_ids) * mask.unsqueeze(-1))
        loss = None if labels is None else nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return {"loss": loss, "logits": logits}


def _task_batches(task: str, count: int):
    generator = _generator(count)
    for _ in range(count):
        if task == "regression":
            yield torch.randn(16, 5, generator=generator), torch.randn(16, 3, generator=generator)
        elif task == "multilabel":
            tokens = torch.randint(0, 9, (16, 6), generator=generator)
            yield (torch.randn(16, 5, generator=generator), tokens), (torch.rand(16, 4, generator=generator) > 0.5).float()
        else:
            tokens = torch.randint(0, 9, (16, 6), generator=generator)
            yield {"input_ids": tokens, "mask": torch.ones(16, 6)}, tokens.roll(-1, dims=1)


@pytest.mark.parametrize(
    "task, model, loss_fn",
    [("regression", _Regressor, nn.MSELoss()), ("multilabel", _TwoInputs, None), ("sequence", _TinyLanguageModel, ModelLoss())],
)
def test_each_tasks_passes_read_the_host_once(task, model, loss_fn):
    """A training and an evaluation pass of each task, with its default metrics, read the device once, at their end."""
    loss_fn = loss_fn or TASKS[task].default_loss()
    counts = []
    for length in COUNTED_BATCHES:
        torch.manual_seed(0)
        network = model()
        metrics = MetricCollection(
            TASKS[task].build_metrics(TASKS[task].default_metrics, 9 if task == "sequence" else 3 if task == "regression" else 4)
        )
        batches = list(_task_batches(task, length))
        optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
        counts.append(
            (
                count_host_reads(lambda: train(network, batches, loss_fn, optimizer, metrics, CPU)),
                count_host_reads(lambda: evaluate(network, batches, loss_fn, metrics, CPU)),
            )
        )
    assert [dict(reads) for pair in counts for reads in pair] == [{"tolist": 1}] * 4


def test_the_task_is_told_from_the_target_and_the_output():
    logits = torch.randn(2, 10)
    assert infer_task(torch.tensor([3, 1]), logits) == "classification"
    assert infer_task(torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), torch.randn(2, 3)) == "multilabel"
    assert infer_task(torch.tensor([[0, 1, 1], [1, 0, 0]]), torch.randn(2, 3)) == "multilabel"
    assert infer_task(torch.tensor([[0.3], [1.7]]), torch.randn(2, 1)) == "regression"
    assert infer_task(torch.tensor([0.5, 2.0]), torch.randn(2)) == "regression"
    assert infer_task(torch.randint(0, 9, (2, 6)), torch.randn(2, 6, 9)) == "sequence"
    with pytest.raises(
        ConfigError, match=r"Cannot tell the task from targets of shape \(2, 6\) and dtype int64 with model outputs of shape \(2, 4\)"
    ):
        infer_task(torch.randint(2, 9, (2, 6)), torch.randn(2, 4))


@pytest.mark.parametrize(
    "task, output, target, num_classes, message",
    [
        (
            "classification",
            torch.randn(2, 4),
            torch.tensor([0, 1]),
            3,
            r"outputs \(2, 4\) for a batch of 2, not \(2, 3\): a classifier needs one logit per class",
        ),
        (
            "regression",
            torch.randn(2, 1),
            torch.randn(2),
            0,
            r"outputs \(2, 1\) for a batch of 2, not \(2,\): a regression's output must have the target's shape",
        ),
        ("multilabel", torch.randn(2, 3), torch.ones(2, 4), 0, r"not \(2, 4\): a multi-label model needs one logit per label"),
        (
            "sequence",
            torch.randn(2, 9),
            torch.zeros(2, 6, dtype=torch.long),
            9,
            r"not \(2, 6, 9\): a sequence model needs one logit per class at every position",
        ),
    ],
)
def test_an_output_that_does_not_fit_the_task_is_one_line(task, output, target, num_classes, message):
    with pytest.raises(ConfigError, match=message):
        check_output(TASKS[task], output, target, num_classes, "Net")


def test_batches_are_called_and_moved_as_their_inputs_say():
    two, language = _TwoInputs(), _TinyLanguageModel()
    (features, tokens), labels = next(_task_batches("multilabel", 1))
    output, loss = output_and_loss(two, to_device((features, tokens), CPU), labels, TASKS["multilabel"].default_loss())
    assert torch.equal(output, two(features, tokens)) and loss.ndim == 0
    inputs, target = next(_task_batches("sequence", 1))
    output, loss = output_and_loss(language, inputs, target, ModelLoss())
    assert torch.equal(loss, language(**inputs, labels=target)["loss"]) and predictions(output).shape == (16, 6, 9)
    assert num_samples(target) == 16
