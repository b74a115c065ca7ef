"""The accuracy every run logs equals torchmetrics' micro-averaged MulticlassAccuracy, batch by batch."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from deep_learning.experiment import accuracy_metric
from deep_learning.metrics import Accuracy


def test_accuracy_equals_torchmetrics_micro_accuracy_exactly():
    generator = torch.Generator().manual_seed(0)
    ours, reference = accuracy_metric(), MulticlassAccuracy(num_classes=10, average="micro")
    assert isinstance(ours, Accuracy)
    for batch in range(40):
        logits = torch.randn(64, 10, generator=generator)
        target = torch.randint(0, 10, (64,), generator=generator)
        logits[0] = logits[0].max()  # a tie: both take the first highest logit
        logits[1, 3] = float("nan")  # argmax takes a NaN as the highest
        target[:batch] = logits[:batch].argmax(dim=1)  # accuracy climbs from chance to 0.6
        ours.update(logits, target)
        reference.update(logits, target)
        assert torch.equal(ours.compute(), reference.compute()), batch


def test_accuracy_resets_and_reads_zero_before_any_sample():
    metric = accuracy_metric()
    metric.update(torch.eye(3, 10), torch.tensor([0, 1, 5]))
    assert torch.equal(metric.compute(), torch.tensor(2 / 3))  # float32, as torchmetrics divides
    metric.reset()
    with pytest.warns(UserWarning, match="called before the ``update``"):  # torchmetrics says so, and we read 0
        assert metric.compute().item() == 0.0
