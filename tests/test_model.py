"""The built-in models and user models by import path: shapes, the chapter's exact MLP, export, and refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deep_learning.core.errors import ConfigError
from deep_learning.core.model import MODELS, build_model, count_parameters

SHAPES = [((1, 28, 28), 10), ((3, 32, 32), 100), ((1, 16, 12), 7)]


def test_the_mlp_is_the_chapters_layer_for_layer_and_value_for_value():
    torch.manual_seed(0)
    ours = build_model()
    torch.manual_seed(0)
    chapter = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))
    assert str(ours) == str(chapter)
    assert list(ours.state_dict()) == list(chapter.state_dict())
    for key, value in chapter.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    assert count_parameters(ours) == 784 * 128 + 128 + 128 * 10 + 10


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("input_shape", "num_classes"), SHAPES)
def test_every_model_maps_images_to_logits_and_learns_from_them(name, input_shape, num_classes):
    model = build_model(name, input_shape, num_classes)
    logits = model(torch.rand(3, *input_shape))
    assert logits.shape == (3, num_classes) and logits.dtype == torch.float32
    nn.functional.cross_entropy(logits, torch.arange(3) % num_classes).backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_every_model_is_drawn_from_the_global_generator(name):
    states = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        states.append(build_model(name).state_dict())
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    assert not all(torch.equal(states[0][key], states[2][key]) for key in states[0])


@pytest.mark.parametrize("name", MODELS)
def test_every_model_exports_with_a_dynamic_batch_and_gives_the_same_logits(name):
    input_shape = (1, 28, 28)
    model = build_model(name, input_shape).eval()
    batch = torch.export.Dim("batch", min=1)
    exported = torch.export.export(model, (torch.rand(2, *input_shape),), dynamic_shapes=({0: batch},)).module()
    for size in (1, 5):
        images = torch.rand(size, *input_shape)
        torch.testing.assert_close(exported(images), model(images), rtol=1e-5, atol=1e-6)


def test_the_mlp_and_cnn_take_their_sizes_from_model_args():
    mlp = build_model("mlp", (3, 32, 32), 100, hidden=64)
    assert [tuple(p.shape) for p in mlp.parameters()] == [(64, 3 * 32 * 32), (64,), (100, 64), (100,)]
    cnn = build_model("cnn", (1, 28, 28), 10, channels=[8, 16, 32])  # a list, as JSON gives it
    convolutions = [layer for layer in cnn if isinstance(layer, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convolutions] == [(1, 8), (8, 16), (16, 32)]
    assert cnn[-1].in_features == 32 * 3 * 3


@pytest.mark.parametrize(("input_shape", "patches"), [((1, 28, 28), 16), ((3, 32, 32), 64), ((1, 16, 12), 12), ((1, 5, 5), 25)])
def test_the_transformer_patch_size_defaults_to_the_largest_of_7_4_2_1_dividing_the_image(input_shape, patches):
    model = build_model("transformer", input_shape)
    assert model.position_embedding.shape == (1, patches + 1, 64)


def test_the_transformer_takes_its_sizes_from_model_args():
    model = build_model("transformer", (1, 28, 28), 10, dim=32, depth=1, heads=2, mlp_dim=48, patch_size=4)
    assert model.position_embedding.shape == (1, 7 * 7 + 1, 32)
    assert len(model.encoder.layers) == 1
    layer = model.encoder.layers[0]
    assert (layer.self_attn.num_heads, layer.linear1.out_features, layer.norm_first) == (2, 48, True)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "input_shape", "model_args", "message"),
    [
        ("transformer", (1, 28, 28), {"patch_size": 5}, "model 'transformer' needs a patch_size that divides 28 and 28, not 5"),
        ("transformer", (1, 28, 28), {"dim": 30}, "needs dim divisible by heads, not dim=30 with heads=4"),
        ("transformer", (784,), {}, "model 'transformer' needs input_shape (channels, height, width) of positive sizes, not (784,)"),
        ("cnn", (1, 28, 28), {"channels": [4] * 5}, "28x28 images allow at most 4, not 5"),
        ("cnn", (1, 28, 28), {"channels": 16}, "model 'cnn' needs channels as a list of channel counts such as [16, 32], not 16"),
        ("cnn", (1, 28, 28), {"channels": [16, 0]}, "model 'cnn' needs channels[1] to be a positive integer, not 0"),
        ("mlp", (1, 28, 28), {"hidden": 0}, "model 'mlp' needs hidden to be a positive integer, not 0"),
        ("mlp", (1, 28, 28), {"hidden": "wide"}, "model 'mlp' needs hidden to be a positive integer, not 'wide'"),
        ("mlp", (1, 28, 28), {"hidden": 1.5}, "needs hidden to be a positive integer, not 1.5"),
        ("mlp", (1, 28, 28), {"width": 64}, "model 'mlp' has no argument 'width': use any of hidden"),
        ("transformer", (1, 28, 28), {"layers": 3}, "has no argument 'layers': use any of dim, depth, heads, mlp_dim, patch_size"),
        ("xyz", (1, 28, 28), {}, "model must be one of mlp, cnn, transformer, or an import path package.module:factory, not 'xyz'"),
    ],
)
def test_a_model_no_run_can_use_is_refused_in_one_line(name, input_shape, model_args, message):
    with pytest.raises(ConfigError) as caught:
        build_model(name, input_shape, 10, **model_args)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_user_factory_gets_the_shape_and_classes_it_names_plus_model_args():
    model = build_model("user_models:tiny_cnn", (3, 32, 32), 100, width=4)
    assert model[0].in_channels == 3 and model[0].out_channels == 4 and model[-1].out_features == 100
    assert build_model("user_models:from_keywords", (3, 8, 8), 5)(torch.rand(2, 3, 8, 8)).shape == (2, 5)
    assert build_model("user_models:no_arguments")(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "model_args", "message"),
    [
        ("user_models:not_a_module", {}, "model 'user_models:not_a_module' returned a int, not a torch.nn.Module"),
        ("user_models:raises", {}, "model 'user_models:raises' raised ValueError: bad width"),
        ("user_models:tiny_cnn", {"depth": 2}, "model 'user_models:tiny_cnn' raised TypeError"),
        ("user_models:missing", {}, "model 'user_models:missing' cannot be imported: module 'user_models' has no attribute 'missing'"),
        ("no_such_package.models:mlp", {}, "cannot be imported: ModuleNotFoundError: No module named 'no_such_package'"),
    ],
)
def test_a_user_factory_that_cannot_give_a_model_is_refused_in_one_line(name, model_args, message):
    with pytest.raises(ConfigError) as caught:
        build_model(name, **model_args)
    assert message in str(caught.value) and "\n" not in str(caught.value)
