"""Device choice: auto follows the chapter, unavailable devices are explained, descriptions are complete."""

from __future__ import annotations

import json

import pytest
import torch

from deep_learning.core.devices import available_devices, describe_device, device_tags, get_default_device, resolve_device
from deep_learning.core.errors import DeviceError


def test_auto_is_the_chapters_default_device():
    # The chapter's rule: the current accelerator when there is one, else the CPU.
    chapters_choice = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else torch.device("cpu")
    assert resolve_device("auto").type == get_default_device().type == chapters_choice.type


def test_cpu_is_always_available():
    assert resolve_device("cpu") == torch.device("cpu")
    assert available_devices()[0] == "cpu"


@pytest.mark.skipif(torch.accelerator.is_available(), reason="needs a machine without an accelerator")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps", "xpu"])
def test_accelerator_missing_here_is_refused_with_the_available_list(name):
    with pytest.raises(DeviceError, match="not available on this machine; available: cpu"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu0", ""])
def test_unknown_device_names_are_refused(name):
    with pytest.raises(DeviceError, match="Unknown device"):
        resolve_device(name)


def test_meta_device_cannot_train():
    with pytest.raises(DeviceError, match="cannot train"):
        resolve_device("meta")


def test_cpu_description_and_tags():
    description = describe_device(torch.device("cpu"))
    json.dumps(description)
    assert description["type"] == "cpu"
    assert description["name"] and description["name"] == description["cpu_name"]
    assert description["memory_bytes"] > 0
    assert description["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    tags = device_tags(description)
    assert tags["device.type"] == "cpu"
    assert tags["device.count"] == "1"
    assert tags["torch.version"] == torch.__version__
    assert set(tags) >= {"device.name", "python.version", "platform", "cpu.count"}
    assert all(isinstance(value, str) for value in tags.values())


def test_devices_command_lists_every_device_as_runs_describe_it():
    from click.testing import CliRunner

    from deep_learning.cli import cli
    from deep_learning.core.devices import cpu_name

    result = CliRunner().invoke(cli, ["devices", "--format", "json"], catch_exceptions=False)
    descriptions = json.loads(result.stdout)
    assert list(descriptions) == available_devices()
    assert set(descriptions["cpu"]) == set(describe_device(torch.device("cpu")))
    assert descriptions["cpu"]["type"] == "cpu" and descriptions["cpu"]["name"] == cpu_name()

    text = CliRunner().invoke(cli, ["devices"], catch_exceptions=False).stdout.splitlines()
    assert text[0] == f"cpu: {cpu_name()}" and "  type: cpu" in text
