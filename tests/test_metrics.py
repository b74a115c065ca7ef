"""Our metrics equal torchmetrics' (accuracy, top-5, AUROC); none of them reads the host per batch."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score, MulticlassPrecision, MulticlassRecall

from deep_learning.benchmarks.syncs import COUNTED_BATCHES, count_host_reads
from deep_learning.core.errors import ConfigError
from deep_learning.core.metrics import (
    AUROC,
    METRIC_NAMES,
    Accuracy,
    MacroScore,
    TopKAccuracy,
    accuracy_metric,
    build_metrics,
    parse_metric_names,
)


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


def _batches(count: int, num_classes: int, size: int = 64, seed: int = 0, tied: bool = False):
    """Random logits and labels; rounded logits make ties, and the first `batch` labels follow the logits."""
    generator = torch.Generator().manual_seed(seed)
    for batch in range(count):
        logits = torch.randn(size, num_classes, generator=generator) * 2
        target = torch.randint(0, num_classes, (size,), generator=generator)
        target[:batch] = logits[:batch].argmax(dim=1)
        yield (logits.round() if tied else logits), target


def test_metrics_are_built_fresh_by_name_in_the_order_given():
    metrics = build_metrics(["auroc", "accuracy", "top5", "f1", "precision", "recall"], 10)
    assert list(metrics) == ["auroc", "accuracy", "top5", "f1", "precision", "recall"]
    assert isinstance(metrics["accuracy"], Accuracy) and isinstance(metrics["auroc"], AUROC)
    assert isinstance(metrics["top5"], TopKAccuracy) and metrics["top5"].k == 5
    for name in ("f1", "precision", "recall"):
        assert isinstance(metrics[name], MacroScore) and (metrics[name].num_classes, metrics[name].score) == (10, name)
    assert build_metrics(["accuracy"], 10)["accuracy"] is not build_metrics(["accuracy"], 10)["accuracy"]
    assert build_metrics(["top5"], 3)["top5"].k == 3


@pytest.mark.parametrize("score, reference", [("f1", MulticlassF1Score), ("precision", MulticlassPrecision), ("recall", MulticlassRecall)])
@pytest.mark.parametrize("num_classes", [2, 10])
def test_macro_scores_equal_torchmetrics_macro_scores_batch_by_batch(score, reference, num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    ours, theirs = MacroScore(num_classes, score), reference(num_classes, average="macro")
    for batch in range(30):
        logits = torch.randn(64, num_classes, generator=generator)
        # Early batches leave the top classes out entirely (neither predicted nor true); ties take the first highest logit.
        present = max(1, min(num_classes, batch // 2))
        logits[:, present:] = -10.0
        logits[0] = logits[0].max()
        target = torch.randint(0, present, (64,), generator=generator)
        target[: batch * 2] = logits[: batch * 2].argmax(dim=1)
        ours.update(logits, target)
        theirs.update(logits, target)
        assert ours.compute().item() == pytest.approx(theirs.compute().item(), abs=1e-6), batch
    ours.reset()
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert ours.compute().item() == 0.0


@pytest.mark.parametrize("num_classes", [3, 10])
def test_top5_equals_torchmetrics_micro_top_k_accuracy(num_classes):
    ours = build_metrics(["top5"], num_classes)["top5"]
    reference = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
    for logits, target in _batches(20, num_classes):
        ours.update(logits, target)
        reference.update(logits, target)
        torch.testing.assert_close(ours.compute(), reference.compute(), rtol=0, atol=1e-7)


@pytest.mark.parametrize(("num_classes", "tied"), [(10, False), (10, True), (3, True)])
def test_auroc_equals_torchmetrics_exact_macro_auroc(num_classes, tied):
    ours, reference = AUROC(num_classes), MulticlassAUROC(num_classes, average="macro", thresholds=None)
    for logits, target in _batches(12, num_classes, tied=tied):
        ours.update(logits, target)
        reference.update(logits, target)
        torch.testing.assert_close(ours.compute(), reference.compute(), rtol=0, atol=1e-6)


def test_auroc_equals_torchmetrics_on_a_trained_looking_model_and_on_classes_never_seen():
    generator = torch.Generator().manual_seed(3)
    target = torch.randint(0, 8, (2000,), generator=generator)  # classes 8 and 9 never occur
    logits = 3 * torch.nn.functional.one_hot(target, 10) + torch.randn(2000, 10, generator=generator)
    ours, reference = AUROC(10), MulticlassAUROC(10, average="macro", thresholds=None)
    ours.update(logits, target)
    reference.update(logits, target)
    with pytest.warns(UserWarning, match="No positive samples"):  # torchmetrics scores such classes 0, and so do we
        expected = reference.compute()
    torch.testing.assert_close(ours.compute(), expected, rtol=0, atol=1e-6)
    assert 0.75 < ours.compute().item() < 0.8  # 8 classes near 0.98, two at 0


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["accuracy", "xyz"], "unknown metric 'xyz': use any of accuracy, f1, precision, recall, auroc, top5"),
        (["f1", "f1"], "metric 'f1' is named twice"),
        ([], "no metric named: use any of accuracy, f1, precision, recall, auroc, top5"),
    ],
)
def test_unknown_repeated_or_no_metric_names_are_refused(names, message):
    with pytest.raises(ConfigError, match=message):
        build_metrics(names, 10)
    with pytest.raises(ConfigError, match=message):
        parse_metric_names(",".join(names))


def test_metric_names_parse_from_a_comma_separated_list():
    assert parse_metric_names(" accuracy, f1 ,auroc,") == ("accuracy", "f1", "auroc")
    assert parse_metric_names(",".join(METRIC_NAMES)) == METRIC_NAMES


@pytest.fixture
def deterministic():
    """torchmetrics counts classes with bincount, a host read, unless deterministic algorithms are on."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def test_every_metric_updates_without_host_reads_and_computes_into_one_read(deterministic):
    batches = list(_batches(max(COUNTED_BATCHES), 10))
    for length in COUNTED_BATCHES:
        metrics = build_metrics(METRIC_NAMES, 10)
        updates = count_host_reads(lambda: [metric.update(*batch) for batch in batches[:length] for metric in metrics.values()])
        assert updates.total() == 0, (length, updates)
        values: list[float] = []
        reads = count_host_reads(
            lambda: values.extend(torch.cat([metric.compute().reshape(-1).double() for metric in metrics.values()]).tolist())
        )
        assert reads == {"tolist": 1}
        assert len(values) == len(METRIC_NAMES) and all(0 <= value <= 1 for value in values)
