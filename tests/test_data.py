"""Data: the data root, the chapter's split, Fashion-MNIST, image folders, user factories, the spec, and clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils.data as utils
import torchvision.transforms.v2 as v2
from conftest import SOURCE_DATA
from PIL import Image
from user_datasets import Records

from deep_learning.core.config import TrainConfig
from deep_learning.core.data.digests import split_digest
from deep_learning.core.data.files import get_data_root, import_raw_files, load_dataset, raw_folder
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.samples import as_tensors, check_samples
from deep_learning.core.data.spec import DataSpec, describe_data
from deep_learning.core.data.splits import load_splits
from deep_learning.core.errors import ConfigError, DataError
from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.training import train_and_evaluate


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
    with pytest.raises(DataError, match=f"Cannot write .*{blocker.name}.*DEEP_LEARNING_DATA_ROOT"):
        import_raw_files("mnist", SOURCE_DATA / "MNIST" / "raw", blocker)
    assert blocker.read_text() == "a file where the data root should be"  # the file in the way is left as it was


def _train_two_epochs(data_root, loader: str, batch_size: int):
    config = TrainConfig(loader=loader, batch_size=batch_size, train_subset=3000)
    train_dl, val_dl, _ = make_loaders(config, load_splits(config, data_root), torch.device("cpu"))
    set_seed(config.seed)
    model = build_model()
    history = train_and_evaluate(
        model,
        train_dl,
        val_dl,
        torch.nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), lr=config.lr),
        accuracy_metric(),
        accuracy_metric(),
        num_epochs=2,
        device=torch.device("cpu"),
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


def _old_digest(split) -> str:
    """split_digest as it was before datasets other than MNIST: md5 of the raw uint8 images (N, 1, 28, 28) and labels."""
    indices = None
    while isinstance(split, utils.Subset):
        level = torch.as_tensor(split.indices)
        indices = level if indices is None else level[indices]
        split = split.dataset
    images, labels = split.data.unsqueeze(1), split.targets
    if indices is not None:
        images, labels = images[indices], labels[indices]
    digest = hashlib.md5(images.contiguous().numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    return digest.hexdigest()[:12]


def _stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [dataset[index] for index in range(len(dataset))]
    return torch.stack([inputs for inputs, _ in samples]), torch.tensor([int(label) for _, label in samples])


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_mnist_digests_and_tensors_are_unchanged(data_root, dataset):
    splits = load_splits(TrainConfig(dataset=dataset, train_subset=300), data_root)
    for split in (splits.train, splits.val, splits.test):
        assert split_digest(split) == _old_digest(split)
    inputs, labels = as_tensors(splits.train)
    expected_inputs, expected_labels = _stack(splits.train)
    assert torch.equal(inputs, expected_inputs) and torch.equal(labels, expected_labels) and labels.dtype == torch.int64


def test_mnist_splits_are_described(data_root):
    splits = load_splits(TrainConfig(), data_root)
    assert splits.spec == DataSpec((1, 28, 28), "float32", 10, tuple(load_dataset("mnist", train=False, root=data_root).classes))
    assert splits.spec.class_names[0] == "0 - zero"
    assert (splits.name, splits.source) == ("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/")


def test_a_validation_fraction_resizes_the_mnist_split(data_root):
    splits = load_splits(TrainConfig(val_fraction=0.25), data_root)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45000, 15000, 10000)


def test_spec_round_trips_through_json():
    spec = DataSpec((3, 32, 32), "float32", 2, ("cat", "dog"))
    assert DataSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(DataError, match="3 class names were given for 2 classes"):
        DataSpec((1,), "float32", 2, ("a", "b", "c"))


# Image folders: PNGs written from real MNIST test images of the digits 0, 1 and 2.


@pytest.fixture(scope="module")
def digits(data_root) -> dict[int, np.ndarray]:
    """30 real MNIST test images of each of the digits 0, 1 and 2, as uint8 arrays (28, 28)."""
    mnist = load_dataset("mnist", train=False, root=data_root)
    return {label: mnist.data[mnist.targets == label][:30].numpy() for label in range(3)}


def _write(folder: Path, digits, images: slice, mode: str = "L", size: int = 28) -> None:
    for label, arrays in digits.items():
        (folder / f"digit-{label}").mkdir(parents=True)
        for index, array in enumerate(arrays[images]):
            Image.fromarray(array).convert(mode).resize((size, size)).save(folder / f"digit-{label}" / f"{index:02d}.png")


def _imagefolder(folder: Path, **settings) -> TrainConfig:
    return TrainConfig(dataset=f"imagefolder:{folder}", **settings)


def test_imagefolder_holds_validation_out_of_its_training_folder(tmp_path, digits):
    _write(tmp_path / "train", digits, slice(0, 20))
    _write(tmp_path / "test", digits, slice(20, 25))
    splits = load_splits(_imagefolder(tmp_path), tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54, 6, 15)
    expected_train, expected_val = utils.random_split(range(60), [54, 6], generator=torch.Generator().manual_seed(42))
    assert (splits.train.indices, splits.val.indices) == (expected_train.indices, expected_val.indices)
    assert splits.spec == DataSpec((1, 28, 28), "float32", 3, ("digit-0", "digit-1", "digit-2"))
    assert (splits.name, splits.source) == (f"imagefolder:{tmp_path}", str(tmp_path))
    image, label = splits.test[0]
    assert torch.equal(image, v2.functional.to_dtype(torch.from_numpy(digits[0][20])[None], torch.float32, scale=True))
    assert label == 0 and splits.test[14][1] == 2


def test_imagefolder_without_split_folders_holds_out_validation_and_test(tmp_path, digits):
    _write(tmp_path, digits, slice(0, 20))
    splits = load_splits(_imagefolder(tmp_path, val_fraction=0.2, train_subset=30), tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 12, 12)
    train, val, test = utils.random_split(range(60), [36, 12, 12], generator=torch.Generator().manual_seed(42))
    assert (splits.val.indices, splits.test.indices) == (val.indices, test.indices)
    assert splits.train.dataset.indices == train.indices
    assert load_splits(_imagefolder(tmp_path, split_seed=7), tmp_path).val.indices != splits.val.indices


def test_imagefolder_uses_its_validation_and_test_folders(tmp_path, digits):
    for name, images in (("train", slice(0, 20)), ("val", slice(20, 24)), ("test", slice(24, 30))):
        _write(tmp_path / name, digits, images)
    splits = load_splits(_imagefolder(tmp_path), tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (60, 12, 18)
    assert Path(splits.val.samples[0][0]).parent.parent == tmp_path / "val"


def test_imagefolder_splits_need_the_same_classes(tmp_path, digits):
    _write(tmp_path / "train", digits, slice(0, 5))
    _write(tmp_path / "test", {0: digits[0], 1: digits[1]}, slice(5, 7))
    with pytest.raises(
        DataError, match=rf"{tmp_path / 'test'} has classes digit-0, digit-1 but {tmp_path / 'train'} has digit-0, digit-1, digit-2"
    ):
        load_splits(_imagefolder(tmp_path), tmp_path)


def test_imagefolder_keeps_rgb_and_converts_the_rest_to_the_first_mode(tmp_path, digits):
    _write(tmp_path / "rgb", digits, slice(0, 4), mode="RGB")
    rgb = load_splits(_imagefolder(tmp_path / "rgb"), tmp_path)
    assert rgb.spec.input_shape == (3, 28, 28) and rgb.train[0][0].shape == (3, 28, 28)
    _write(tmp_path / "mixed", digits, slice(0, 4))
    Image.fromarray(digits[2][9]).convert("RGB").save(tmp_path / "mixed" / "digit-2" / "99.png")
    mixed = load_splits(_imagefolder(tmp_path / "mixed"), tmp_path)
    inputs, _ = as_tensors(mixed.train.dataset)
    assert inputs.shape == (13, 1, 28, 28)


def test_imagefolder_sizes_must_agree_unless_resized(tmp_path, digits):
    _write(tmp_path / "train", digits, slice(0, 4))
    _write(tmp_path / "test", digits, slice(4, 6), size=32)
    with pytest.raises(DataError, match=r"different sizes \(28x28 and 32x32, e.g. .*\): give --image-size N"):
        load_splits(_imagefolder(tmp_path), tmp_path)
    splits = load_splits(_imagefolder(tmp_path, image_size=16), tmp_path)
    assert splits.spec.input_shape == (1, 16, 16)
    assert as_tensors(splits.test)[0].shape == (6, 1, 16, 16)


@pytest.mark.parametrize("layout", ["empty", "files only", "empty class folders"])
def test_imagefolder_without_images_in_class_folders_is_refused_in_a_line(tmp_path, layout):
    folder = tmp_path / "images"
    folder.mkdir()
    if layout == "files only":
        Image.new("L", (4, 4)).save(folder / "a.png")
    if layout == "empty class folders":
        (folder / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError) as error:
        load_splits(_imagefolder(folder), tmp_path)
    message = str(error.value)
    assert "\n" not in message and f"expected images as {folder}/train/<class>/*.png" in message
    found = {
        "empty": "0 files and 0 folders",
        "files only": "1 files and 0 folders",
        "empty class folders": "no valid file for the classes cat",
    }
    assert found[layout] in message
    with pytest.raises(DataError, match="is not a folder"):
        load_splits(_imagefolder(tmp_path / "nowhere"), tmp_path)


def test_imagefolder_batches_are_the_same_from_tensors_and_dataloaders(tmp_path, digits):
    _write(tmp_path, digits, slice(0, 10))
    config = TrainConfig(dataset=f"imagefolder:{tmp_path}", batch_size=8, val_batch_size=4)
    splits = load_splits(config, tmp_path)
    tensors = make_loaders(config, splits, torch.device("cpu"))
    dataloaders = make_loaders(dataclasses.replace(config, loader="dataloader"), splits, torch.device("cpu"))
    for tensor_loader, dataloader in zip(tensors, dataloaders):
        torch.manual_seed(3)
        from_tensors = list(tensor_loader)
        torch.manual_seed(3)
        for (inputs, labels), (expected_inputs, expected_labels) in zip(from_tensors, dataloader, strict=True):
            assert torch.equal(inputs, expected_inputs) and torch.equal(labels, expected_labels)
    # Image files are not stored tensors: their digest reads a bounded sample, unless a loader already decoded them.
    assert split_digest(splits.val, as_tensors(splits.val)) == split_digest(splits.val, _stack(splits.val))
    assert split_digest(splits.val, (torch.zeros(3, 1, 28, 28), torch.zeros(3))) != split_digest(splits.val, _stack(splits.val))
    assert split_digest(splits.val) == split_digest(load_splits(config, tmp_path).val) != split_digest(splits.train)


# Factories: user code that returns the splits.


def test_factory_returns_splits_with_their_class_names(data_root):
    splits = load_splits(TrainConfig(dataset="user_datasets:fashion_slice", train_subset=150), data_root)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (150, 50, 50)
    assert splits.spec.class_names[0] == "T-shirt/top" and splits.spec.num_classes == 10
    assert (splits.name, splits.source) == ("user_datasets:fashion_slice", "user_datasets:fashion_slice")
    fashion = as_tensors(load_dataset("fashion-mnist", train=False, root=data_root))
    assert torch.equal(as_tensors(splits.val)[0], fashion[0][200:250])
    assert split_digest(splits.test) == split_digest(utils.TensorDataset(fashion[0][250:300], fashion[1][250:300]))


def test_factory_without_a_test_split_gets_no_test_loader(data_root):
    config = TrainConfig(dataset="user_datasets:fashion_pair", split_seed=5)
    splits = load_splits(config, data_root)
    assert splits.test is None and (len(splits.train), len(splits.val)) == (250, 50)
    assert splits.spec.class_names == tuple(str(label) for label in range(10))
    order = torch.randperm(300, generator=torch.Generator().manual_seed(5))
    assert torch.equal(as_tensors(splits.val)[1], as_tensors(load_dataset("fashion-mnist", train=False, root=data_root))[1][order[250:]])
    for loader in ("tensor", "dataloader"):
        train, val, test = make_loaders(dataclasses.replace(config, loader=loader), splits, torch.device("cpu"))
        assert test is None and len(val) == 1


@pytest.mark.parametrize(
    "dataset, error, message",
    [
        ("user_datasets:a_list", DataError, r"returned a list of 3 items: expected a dict with keys train, val"),
        ("user_datasets:records", DataError, r"the training split yields a dict with keys image, label, not \(input, target\) pairs"),
        ("user_datasets:missing", ConfigError, r"has no attribute 'missing'"),
        (
            "imagefolder:",
            ConfigError,
            r"dataset must be mnist, fashion-mnist, imagefolder:DIR, csv:FILE, text:FILE or an import path package.module:factory, not 'imagefolder:'",
        ),
    ],
)
def test_unusable_datasets_are_refused(data_root, dataset, error, message):
    with pytest.raises(error, match=message):
        load_splits(TrainConfig(dataset=dataset, train_subset=2000), data_root)


# The pieces fit() calls on user datasets.


class Stream(utils.IterableDataset):
    def __init__(self, limit: int = 1) -> None:
        self.limit = limit

    def __iter__(self):
        for _ in range(self.limit):
            yield torch.zeros(1), 0


def test_describe_data_reads_a_tensor_dataset():
    dataset = utils.TensorDataset(torch.rand(6, 5, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 0, 2]))
    assert describe_data(dataset) == DataSpec((5,), "float64", 4, ("0", "1", "2", "3"), task="", target_shape=(), target_dtype="int64")
    assert describe_data(utils.Subset(dataset, [0, 2])).num_classes == 4
    assert describe_data(dataset, num_classes=6).class_names == ("0", "1", "2", "3", "4", "5")
    assert describe_data(dataset, class_names=["a", "b"]).class_names == ("a", "b")
    # Labels that are not stored are not read to count the classes: the model's output gives them, once a run starts.
    pairs = [(torch.zeros(2), label) for label in (0, 4)]
    assert describe_data(pairs).num_classes == 0
    regression = describe_data(utils.TensorDataset(torch.rand(3, 2), torch.rand(3, 4)))
    assert (regression.num_classes, regression.target_shape, regression.target_dtype) == (0, (4,), "float32")


@pytest.mark.parametrize(
    "dataset, target_key, message",
    [
        (
            utils.Subset(Records(), [0]),
            None,
            r"yields a dict with keys image, label, not \(input, target\) pairs: name the target's key with target_key",
        ),
        (Records(), "target", r"samples have no key 'target' \(their keys: image, label\): give the target's key as target_key"),
        ([(torch.zeros(1), 0)], "label", r"yields a tuple of 2 items, not dicts: target_key is for samples that are dicts"),
        ([(torch.zeros(1), 0, "extra")], None, r"yields a tuple of 3 items, not \(input, target\) pairs"),
        ([(Image.new("L", (2, 2)), 0)], None, r"inputs are an Image, not tensors: convert them"),
        ([((torch.zeros(1), "text"), 0)], None, r"inputs are a tuple of 2 items, not tensors"),
        ([(torch.zeros(1), "cat")], None, r"targets are a str, not tensors or numbers"),
        ([], None, r"the training split is empty"),
        (Stream(limit=0), None, r"is a stream that yields nothing"),
        ({1, 2}, None, r"is a set, not a dataset: give one with __getitem__ and __len__, or an IterableDataset"),
    ],
)
def test_check_samples_refuses_what_is_not_inputs_and_a_target(dataset, target_key, message):
    with pytest.raises(DataError, match=message):
        check_samples(dataset, "training", target_key)


def test_check_samples_takes_every_form_of_inputs_and_targets():
    check_samples([(torch.zeros(1), 3)], "training")
    check_samples(utils.TensorDataset(torch.zeros(2, 1), torch.tensor([1, 0], dtype=torch.int32)), "validation")
    check_samples([(torch.zeros(1), 1.5), (torch.zeros(1), torch.tensor([0.0, 1.0]))], "training")  # regression, multi-label
    check_samples([((torch.zeros(3), torch.zeros(2, dtype=torch.int64)), 0)], "training")  # two inputs
    check_samples(
        [{"input_ids": torch.zeros(4, dtype=torch.int64), "mask": torch.ones(4), "labels": torch.zeros(4, dtype=torch.int64)}],
        "training",
        "labels",
    )
    check_samples(Stream(), "training")


def test_as_tensors_indexes_tensor_datasets_through_subsets():
    dataset = utils.TensorDataset(torch.rand(10, 2, 3), torch.arange(10, dtype=torch.int32))
    split = utils.Subset(utils.Subset(dataset, [9, 7, 5, 3, 1]), range(1, 4))
    inputs, labels = as_tensors(split)
    expected_inputs, expected_labels = _stack(split)
    assert torch.equal(inputs, expected_inputs) and torch.equal(labels, expected_labels) and labels.dtype == torch.int64
    assert split_digest(split) == split_digest(utils.TensorDataset(expected_inputs, expected_labels))
    assert torch.equal(as_tensors([(torch.ones(2), 1), (torch.zeros(2), 0)])[0], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(DataError, match=r"sample 1 has shape \(3,\) but sample 0 \(1,\)"):
        as_tensors([(torch.ones(1), 1), (torch.zeros(3), 0)])
