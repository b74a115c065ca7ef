"""Data: the data root, the chapter's split, Fashion-MNIST, and clear errors for missing or corrupt files."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import pytest
import torch
import torch.utils.data as utils

from conftest import SOURCE_DATA
from deep_learning.config import TrainConfig
from deep_learning.data import get_data_root, import_raw_files, load_dataset, load_splits, make_loaders, raw_folder
from deep_learning.errors import ConfigError, DataError
from deep_learning.experiment import accuracy_metric
from deep_learning.model import build_model
from deep_learning.reproducibility import set_seed
from deep_learning.training import train_and_evaluate


def test_data_root_prefers_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEP_LEARNING_DATA_ROOT", str(tmp_path / "mine"))
    assert get_data_root() == tmp_path / "mine"


def test_data_root_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEP_LEARNING_DATA_ROOT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert get_data_root() == tmp_path / "cache" / "deep_learning" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_root() == tmp_path / "home" / ".cache" / "deep_learning" / "data"


def test_split_is_the_chapters(data_root):
    splits = load_splits(TrainConfig(), data_root)
    chapter_train, chapter_val = utils.random_split(
        load_dataset("mnist", train=True, root=data_root), [50000, 10000], generator=torch.Generator().manual_seed(42)
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50000, 10000, 10000)
    assert splits.train.indices == chapter_train.indices
    assert splits.val.indices == chapter_val.indices
    image, label = splits.train[0]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
    assert 0.0 <= image.min() and image.max() <= 1.0 and 0 <= label < 10


def test_another_split_seed_gives_another_split(data_root):
    assert load_splits(TrainConfig(split_seed=7), data_root).val.indices != load_splits(TrainConfig(), data_root).val.indices


def test_train_subset_takes_the_first_samples_of_the_split(data_root):
    full = load_splits(TrainConfig(), data_root)
    subset = load_splits(TrainConfig(train_subset=100), data_root)
    assert len(subset.train) == 100
    assert torch.equal(subset.train[99][0], full.train[99][0])
    with pytest.raises(ConfigError, match="at most 50000"):
        load_splits(TrainConfig(train_subset=50001), data_root)


def test_fashion_mnist_is_a_second_dataset(data_root):
    mnist = load_splits(TrainConfig(), data_root)
    fashion = load_splits(TrainConfig(dataset="fashion-mnist"), data_root)
    assert len(fashion.train) == 50000 and len(fashion.test) == 10000
    assert not torch.equal(fashion.test[0][0], mnist.test[0][0])


def test_missing_files_name_the_folder_and_the_four_files(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEP_LEARNING_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        load_dataset("mnist", train=True, root=tmp_path)
    message = str(error.value)
    assert str(raw_folder("mnist", tmp_path)) in message
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in message
    assert "deep-learning data import" in message


def test_corrupt_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEP_LEARNING_OFFLINE", "1")
    folder = raw_folder("mnist", tmp_path)
    folder.mkdir(parents=True)
    for path in (SOURCE_DATA / "MNIST" / "raw").iterdir():
        shutil.copyfile(path, folder / path.name)
    truncated = folder / "train-labels-idx1-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz is corrupt"):
        load_dataset("mnist", train=True, root=tmp_path)


def test_import_checks_md5_before_copying(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SOURCE_DATA / "MNIST" / "raw", source)
    (source / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is corrupt"):
        import_raw_files("mnist", source, tmp_path / "root")
    assert not raw_folder("mnist", tmp_path / "root").exists()


def test_import_places_files_that_load(tmp_path):
    target = import_raw_files("mnist", SOURCE_DATA / "MNIST" / "raw", tmp_path)
    assert target == raw_folder("mnist", tmp_path)
    assert len(load_dataset("mnist", train=False, root=tmp_path)) == 10000


def test_unwritable_data_root_is_explained(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data root should be")
    with pytest.raises(DataError, match="Cannot write"):
        import_raw_files("mnist", SOURCE_DATA / "MNIST" / "raw", blocker)
    assert Path(blocker).is_file()


def _train_two_epochs(data_root, loader: str, batch_size: int):
    config = TrainConfig(loader=loader, batch_size=batch_size, train_subset=3000)
    train_dl, val_dl, _ = make_loaders(config, load_splits(config, data_root), torch.device("cpu"))
    set_seed(config.seed)
    model = build_model()
    history = train_and_evaluate(
        model, train_dl, val_dl, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=config.lr),
        accuracy_metric(), accuracy_metric(), num_epochs=2, device=torch.device("cpu"),
    )
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return [(r.train_loss, r.train_metric, r.val_loss, r.val_metric) for r in history], buffer.getvalue()


@pytest.mark.parametrize("batch_size", [64, 1000])
def test_tensor_path_gives_the_dataloaders_batches_exactly(data_root, batch_size):
    dataloader_metrics, dataloader_weights = _train_two_epochs(data_root, "dataloader", batch_size)
    tensor_metrics, tensor_weights = _train_two_epochs(data_root, "tensor", batch_size)
    assert tensor_metrics == dataloader_metrics
    assert tensor_weights == dataloader_weights


def test_tensor_loader_batches_like_a_dataloader(data_root):
    config = TrainConfig(train_subset=200, batch_size=64, val_batch_size=64)
    splits = load_splits(config, data_root)
    tensors = make_loaders(config, splits, torch.device("cpu"))
    dataloaders = make_loaders(dataclasses.replace(config, loader="dataloader"), splits, torch.device("cpu"))
    for tensor_loader, dataloader in zip(tensors, dataloaders):
        assert len(tensor_loader) == len(dataloader)
        assert len(tensor_loader.dataset) == len(dataloader.dataset)
    torch.manual_seed(3)
    from_tensors = [labels.tolist() for _, labels in tensors[0]]
    torch.manual_seed(3)
    from_dataloader = [labels.tolist() for _, labels in dataloaders[0]]
    assert from_tensors == from_dataloader and [len(batch) for batch in from_tensors] == [64, 64, 64, 8]
