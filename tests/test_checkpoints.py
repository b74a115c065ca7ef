"""Which checkpoints a run may resume from (the same settings, library versions and world size), and what restoring keeps."""

from __future__ import annotations

import pytest
import torch

from deep_learning.core.checkpoint_files import library_versions
from deep_learning.core.config import TrainConfig
from deep_learning.core.errors import CheckpointError
from deep_learning.core.model import build_model
from deep_learning.core.optimization import build_optimizer
from deep_learning.core.precision import grad_scaler, with_amp
from deep_learning.core.reproducibility import rng_state
from deep_learning.experiment.checkpoints import check_compatible, restore


def _checkpoint(config: TrainConfig, **changes) -> dict:
    return {"config": config.to_params(), "versions": library_versions(), "world_size": 1} | changes


def test_the_same_settings_resume_and_where_it_runs_may_change():
    saved = TrainConfig(device="cpu", epochs=3)
    check_compatible(_checkpoint(saved), saved)
    check_compatible(_checkpoint(saved), TrainConfig(device="cuda", epochs=3, checkpoint_dir="elsewhere"))


def test_a_changed_hyperparameter_is_refused_by_name():
    with pytest.raises(CheckpointError, match=r"Cannot resume: lr=0\.1 in the checkpoint, 0\.05 now\. Resume with the original settings\."):
        check_compatible(_checkpoint(TrainConfig()), TrainConfig(lr=0.05))


def test_another_world_size_or_library_version_is_refused():
    with pytest.raises(CheckpointError, match="world_size 2 in the checkpoint, 1 now"):
        check_compatible(_checkpoint(TrainConfig(), world_size=2), TrainConfig())
    versions = library_versions() | {"torch": "1.0.0"}
    with pytest.raises(CheckpointError, match="torch '1.0.0' in the checkpoint"):
        check_compatible(_checkpoint(TrainConfig(), versions=versions), TrainConfig())


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_default():
    checkpoint = _checkpoint(TrainConfig())
    del checkpoint["config"]["compile_mode"]
    check_compatible(checkpoint, TrainConfig())
    with pytest.raises(CheckpointError, match="compile_mode='default' in the checkpoint, 'reduce-overhead' now"):
        check_compatible(checkpoint, TrainConfig(compile=True, compile_mode="reduce-overhead"))


def test_an_fp16_checkpoint_of_the_unfused_sgd_resumes_on_the_fused_one():
    # Checkpoints record the optimizer's param groups, `fused` included; fp16 now steps with the fused
    # kernel, which GradScaler hands its inf flag to, and the unfused one refuses that flag.
    device = torch.device("cpu")
    model = build_model()
    unfused = torch.optim.SGD(model.parameters(), lr=0.1)
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": unfused.state_dict(),
        "grad_scaler": None,
        "rng": rng_state(device),
        "history": [],
    }
    optimizer, scaler = build_optimizer(model.parameters(), TrainConfig(lr=0.1, amp="fp16")), grad_scaler(device, "fp16")
    restore(checkpoint, model=model, optimizer=optimizer, grad_scaler=scaler, device=device)
    loss = with_amp(model, device, "fp16")(torch.rand(4, 1, 28, 28)).sum()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    assert optimizer.param_groups[0]["fused"] is True
