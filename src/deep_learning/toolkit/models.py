"""`load_model` from Python: a run's trained module, rebuilt as its run built it (no pickled code), on any device."""

from __future__ import annotations

import torch
import torch.nn as nn

from deep_learning import tracking
from deep_learning.core.devices import resolve_device
from deep_learning.experiment.inference import load_model as load_trained


def load_model(run_id: str, best: bool = False, device: str | torch.device = "auto") -> nn.Module:
    """The trained `nn.Module` of training run `run_id` (its final weights; `best`: the best checkpoint it kept, by its
    monitor), in eval mode on `device` (auto: this machine's accelerator, else the CPU), whatever device trained it.

    Also takes what `deep-learning evaluate` takes: runs:/RUN_ID/model, models:/NAME/VERSION or a state_dict file.
    """
    reference = tracking.best_checkpoint_uri(run_id) if best else run_id
    return load_trained(reference, resolve_device(str(device))).model
