"""Batches as users make them, through `fit`, on real data: dict samples with a target key, a model of two inputs, a
Hugging Face-style model that computes its own loss, a DataLoader's collate_fn padding sentences of varying length
(and its workers), a stream, a lambda, and a dataset of a million samples that no run reads whole."""

from __future__ import annotations

import subprocess

import mlflow
import numpy as np
import pytest
import stream_script
import torch
import torch.nn as nn
import torch.utils.data as utils
from conftest import BIN, CHAPTER, subprocess_env
from mlflow import MlflowClient
from readback import only_run, tracking_uri

import deep_learning
from deep_learning.core.batches import ModelLoss
from deep_learning.core.data.files import load_dataset
from deep_learning.core.data.samples import as_tensors
from deep_learning.core.data.streams import RankShare
from deep_learning.core.distributed import Cluster
from deep_learning.core.errors import ConfigError, DataError

PAD = -100


def _mnist(data_root, count: int, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = as_tensors(load_dataset("mnist", train=train, root=data_root))
    return images[:count], labels[:count]


class Halves(utils.Dataset):
    """MNIST digits as two inputs, the image's top and bottom halves: ((top, bottom), label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index]
        return (image[:, :14], image[:, 14:]), self.labels[index]


class TwoHalves(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.top, self.bottom, self.head = nn.Linear(392, 32), nn.Linear(392, 32), nn.Linear(64, 10)

    def forward(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(torch.cat([self.top(top.flatten(1)), self.bottom(bottom.flatten(1))], dim=1)))


def test_a_model_of_two_inputs_trains_and_logs_a_model_that_takes_both(store, data_root, capsys):
    images, labels = _mnist(data_root, 2000)
    result = deep_learning.fit(
        TwoHalves,
        Halves(images[:1500], labels[:1500]),
        Halves(images[1500:], labels[1500:]),
        epochs=2,
        optimizer="adamw",
        lr=3e-3,
        device="cpu",  # the class: built after fit seeds
    )
    assert "takes 2 inputs (input_0, input_1)" in capsys.readouterr().err
    run = MlflowClient(store).get_run(result.run_id)
    assert run.data.params["task"] == "classification" and run.data.metrics["val_accuracy"] > 0.6
    assert run.data.tags["deep_learning.model_inputs"] == "positional: input_0, input_1"
    with tracking_uri(store):
        logged = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model")
    (top, bottom), _ = Halves(images, labels)[1600]
    model = TwoHalves()
    model.load_state_dict(torch.load(MlflowClient(store).download_artifacts(result.run_id, "state_dict.pt"), weights_only=True))
    with torch.inference_mode():
        assert torch.allclose(logged(top[None], bottom[None]), model(top[None], bottom[None]), atol=1e-5)


def _sentences() -> list[torch.Tensor]:
    """The chapter's sentences as character codes (bytes), of varying length."""
    text = CHAPTER.read_text(encoding="utf-8").encode("ascii", errors="ignore")
    return [torch.tensor(list(sentence), dtype=torch.int64) for sentence in text.split(b". ") if 8 <= len(sentence) <= 120]


class NextCharacter(utils.Dataset):
    """Dict samples of a sentence and, under "labels", its next character at every position."""

    def __init__(self, sentences: list[torch.Tensor]) -> None:
        self.sentences = sentences

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sentence = self.sentences[index]
        return {"input_ids": sentence[:-1], "labels": sentence[1:]}


def pad(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A user's collate_fn: sentences padded to the longest (inputs with 0 and a mask, labels with -100)."""
    longest = max(len(sample["input_ids"]) for sample in samples)

    def padded(key: str, value: int) -> torch.Tensor:
        return torch.stack([nn.functional.pad(sample[key], (0, longest - len(sample[key])), value=value) for sample in samples])

    mask = torch.stack([torch.arange(longest) < len(sample["input_ids"]) for sample in samples]).float()
    return {"input_ids": padded("input_ids", 0), "attention_mask": mask, "labels": padded("labels", PAD)}


class CharacterModel(nn.Module):
    """A Hugging Face-style model: keyword inputs, an output with `logits`, and its own loss when given `labels`."""

    def __init__(self, vocabulary: int = 128, width: int = 32) -> None:
        super().__init__()
        self.embedding, self.mixer, self.head = (
            nn.Embedding(vocabulary, width),
            nn.GRU(width, width, batch_first=True),
            nn.Linear(width, vocabulary),
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None):
        hidden, _ = self.mixer(self.embedding(input_ids) * attention_mask.unsqueeze(-1))
        logits = self.head(hidden)
        loss = None if labels is None else nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD)
        return _Output(loss, logits)


class _Output(dict):
    """What a Hugging Face model returns: a dict whose items are also attributes."""

    def __init__(self, loss, logits) -> None:
        super().__init__(logits=logits) if loss is None else super().__init__(loss=loss, logits=logits)
        self.loss, self.logits = loss, logits


def _character_loaders(workers: int) -> tuple[utils.DataLoader, utils.DataLoader]:
    sentences = _sentences()
    split = len(sentences) * 4 // 5
    settings = {"batch_size": 16, "collate_fn": pad, "num_workers": workers}
    return utils.DataLoader(NextCharacter(sentences[:split]), shuffle=True, **settings), utils.DataLoader(
        NextCharacter(sentences[split:]), **settings
    )


def _fit_characters(workers: int, **options):
    train, val = _character_loaders(workers)
    torch.manual_seed(0)
    return deep_learning.fit(
        CharacterModel(), train, val, target_key="labels", epochs=2, device="cpu", optimizer="adamw", lr=1e-2, **options
    )


def test_dict_batches_padded_by_the_users_collate_fn_train_a_model_that_computes_its_own_loss(store, tmp_path):
    result = _fit_characters(0, loss_fn=ModelLoss())
    run = MlflowClient(store).get_run(result.run_id)
    params = run.data.params
    assert (params["task"], params["metrics"], params["target_key"], params["loss_fn"]) == (
        "sequence",
        "perplexity,accuracy",
        "labels",
        "ModelLoss(target_argument='labels')",
    )
    history = MlflowClient(store).get_metric_history(result.run_id, "val_perplexity")
    assert history[1].value < history[0].value < 128  # 128 byte values: the uniform perplexity
    assert run.data.tags["deep_learning.model_inputs"] == "positional: input_ids, attention_mask"
    sentence = _sentences()[0][:-1]
    with tracking_uri(store):
        logged = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model")
        signature = mlflow.models.get_model_info(f"runs:/{result.run_id}/model").signature
    assert [spec.shape for spec in signature.inputs.inputs] == [(-1, -1), (-1, -1)]  # the lengths vary: so does the model's input
    model = CharacterModel()
    model.load_state_dict(torch.load(MlflowClient(store).download_artifacts(result.run_id, "state_dict.pt"), weights_only=True))
    with torch.inference_mode():
        expected = model(sentence[None], torch.ones(1, len(sentence))).logits
        assert torch.allclose(logged(sentence[None], torch.ones(1, len(sentence))), expected, atol=1e-5)


def test_the_users_workers_give_the_same_batches_as_the_main_process(store):
    """fit keeps the DataLoader's collate_fn and workers but replaces its sampler, and seeds the workers from the run."""
    alone, workers = _fit_characters(0), _fit_characters(2)
    assert [(epoch.train_loss, epoch.val_loss, epoch.val_metrics) for epoch in alone.history] == [
        (epoch.train_loss, epoch.val_loss, epoch.val_metrics) for epoch in workers.history
    ]
    client = MlflowClient(store)
    weights = [
        torch.load(client.download_artifacts(run_id, "state_dict.pt"), weights_only=True) for run_id in (alone.run_id, workers.run_id)
    ]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


class InterruptedStream(utils.IterableDataset):
    """A stream of digits that raises KeyboardInterrupt (as Ctrl-C would) at its `stop_at`-th sample, once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, stop_at: int | None = None) -> None:
        self.images, self.labels, self.stop_at = images, labels, stop_at

    def __iter__(self):
        for position, sample in enumerate(zip(self.images, self.labels)):
            if position == self.stop_at:
                self.stop_at = None
                raise KeyboardInterrupt
            yield sample


def _fit_stream(stream: InterruptedStream, val: utils.TensorDataset, resume: str | None = None):
    return deep_learning.fit(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
        stream,
        val,
        epochs=3,
        steps_per_epoch=8,
        batch_size=50,
        device="cpu",
        resume=resume,
    )


def test_a_stream_reads_on_across_epochs_and_resumes_exactly(store, data_root):
    images, labels = _mnist(data_root, 1100)
    val = utils.TensorDataset(images[1000:], labels[1000:])
    uninterrupted = _fit_stream(InterruptedStream(images[:1000], labels[:1000]), val)
    client = MlflowClient(store)
    run = client.get_run(uninterrupted.run_id)
    assert (run.data.params["steps_per_epoch"], run.data.params["num_train_samples"]) == ("8", "stream")
    assert [epoch.num_train_samples for epoch in uninterrupted.history] == [400, 400, 400]  # the third epoch starts the stream again
    stream = InterruptedStream(images[:1000], labels[:1000], stop_at=500)  # in the second epoch
    with pytest.raises(KeyboardInterrupt):
        _fit_stream(stream, val)
    [killed] = client.search_runs(["0"], "attributes.status = 'KILLED'")
    resumed = _fit_stream(stream, val, resume=killed.info.run_id)
    assert [epoch.train_loss for epoch in resumed.history] == [epoch.train_loss for epoch in uninterrupted.history]
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"


def test_a_stream_without_steps_per_epoch_trains_one_pass_an_epoch(store, data_root):
    images, labels = _mnist(data_root, 700)
    result = deep_learning.fit(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
        InterruptedStream(images[:600], labels[:600]),
        utils.TensorDataset(images[600:], labels[600:]),
        epochs=2,
        batch_size=64,
        device="cpu",
    )
    assert [epoch.num_train_samples for epoch in result.history] == [600, 600]  # counted as the pass went: a stream has no length
    with pytest.raises(
        ConfigError, match="--lr-schedule cosine \\(and warm-up\\) needs epochs of known length: give steps_per_epoch for a stream"
    ):
        deep_learning.fit(
            nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
            InterruptedStream(images[:600], labels[:600]),
            utils.TensorDataset(images[600:], labels[600:]),
            lr_schedule="cosine",
            device="cpu",
        )


def test_a_stream_is_dealt_between_ranks_by_position():
    stream = [(torch.tensor(position), position) for position in range(7)]
    ranks = [[label for _, label in RankShare(stream, Cluster(rank, rank, 3, 1, "gloo"))] for rank in range(3)]
    assert ranks == [[0, 3, 6], [1, 4], [2, 5]]


def test_a_stream_trains_under_torchrun_as_one_run(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", stream_script.__file__],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, DEEP_LEARNING_DATA_ROOT=str(data_root), DEEP_LEARNING_OFFLINE="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(MlflowClient(uri))
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    samples = MlflowClient(uri).get_metric_history(run.info.run_id, "train_samples_per_second")
    assert len(samples) == stream_script.EPOCHS


class Million(utils.Dataset):
    """A million samples, each made when asked for, counting how often that is."""

    def __init__(self) -> None:
        self.reads = 0
        self.reads_before_training: int | None = None

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, index: int):
        self.reads += 1
        generator = torch.Generator().manual_seed(index)
        features = torch.randn(8, generator=generator)
        return features, int(features.sum() > 0)


class CountingModel(nn.Module):
    """Notes how many samples its training data had given when it trains for the first time."""

    def __init__(self, data: Million) -> None:
        super().__init__()
        self.data, self.linear = data, nn.Linear(8, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and self.data.reads_before_training is None:
            self.data.reads_before_training = self.data.reads
        return self.linear(features)


def test_a_million_samples_are_not_read_before_the_first_step(store, capsys):
    data = Million()
    validation = utils.TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    result = deep_learning.fit(
        CountingModel(data), data, validation, epochs=1, steps_per_epoch=3, batch_size=64, num_classes=2, device="cpu"
    )
    assert data.reads_before_training <= 64 + 32  # the first batch, the sample checked and described, the digest's sample
    assert data.reads <= 3 * 64 + 32
    assert "Batches come from a DataLoader: the training split (Million) is not stored as tensors" in capsys.readouterr().out
    assert MlflowClient(store).get_run(result.run_id).data.params["num_train_samples"] == "1000000"


def test_a_missing_target_key_is_one_line_and_no_run_is_left(store):
    with pytest.raises(DataError, match="the training split's samples have no key 'label' \\(their keys: input_ids, labels\\)") as raised:
        deep_learning.fit(CharacterModel(), NextCharacter(_sentences()), NextCharacter(_sentences()), target_key="label", device="cpu")
    assert "\n" not in str(raised.value)
    assert not MlflowClient(store).search_runs(["0"])


def test_a_lambda_and_a_closure_are_models_fit_records(store):
    width = 16

    def build(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.ReLU(), nn.Linear(width, num_classes))

    data = utils.TensorDataset(torch.randn(64, 4), torch.randint(0, 3, (64,)))
    for model in (build, lambda: build(3, (4,))):
        result = deep_learning.fit(model, data, data, epochs=1, device="cpu")
        params = MlflowClient(store).get_run(result.run_id).data.params
        assert params["model"].startswith("test_user_batches:test_a_lambda_and_a_closure_are_models_fit_records.<locals>.")
        assert params["model_class"] == "torch.nn.modules.container.Sequential" and result.run_name.startswith(("build-", "Sequential-"))
    assert np.isfinite(result.history[-1].train_loss)
