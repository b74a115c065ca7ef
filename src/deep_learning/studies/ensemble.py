"""Copies of one model, one per seed, called as one batched model: parameters stacked with `stack_module_state`,
the forward and the loss batched with `torch.func.vmap`, and each seed's slice of the state written back to its own run."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from deep_learning.core.batches import as_arguments, predictions
from deep_learning.core.errors import ConfigError, first_line
from deep_learning.experiment.session import Session


class SeedEnsemble:
    """Copies of one model architecture, their parameters and buffers stacked along a new first dimension, called as one."""

    def __init__(self, models: Sequence[nn.Module], probe: tuple[Any, Tensor], loss_fn: Any) -> None:
        self.models = list(models)
        self.base = copy.deepcopy(self.models[0]).to("meta")
        self.loss_fn = loss_fn
        self.size = len(self.models)
        self.params, self.buffers = self._stacked(probe)

    def _logits(self, params: dict[str, Tensor], buffers: dict[str, Tensor], inputs: Any) -> Tensor:
        args, kwargs = as_arguments(inputs)
        return predictions(functional_call(self.base, (params, buffers), args, kwargs))

    def _batched(self, shared: bool):
        return vmap(self._logits, in_dims=(0, 0, None if shared else 0), randomness="different")

    def __call__(self, inputs: Any, shared: bool = False) -> Tensor:
        """Every seed's logits, (seeds, batch, ...): of its own batch (inputs (seeds, batch, ...)), or of one shared batch."""
        return self._batched(shared)(self.params, self.buffers, inputs)

    def losses(self, logits: Tensor, targets: Tensor, shared: bool = False) -> Tensor:
        """Each seed's loss on its batch, (seeds,): the loss batched with vmap, or a plain mean cross-entropy (the
        chapter's) as one call over every seed's samples, where vmap's rule for it costs a step more than its forward."""
        loss_fn = self.loss_fn
        if type(loss_fn) is nn.CrossEntropyLoss and loss_fn.weight is None and loss_fn.reduction == "mean":
            targets = targets.expand(logits.shape[:2]) if shared else targets
            per_sample = nn.functional.cross_entropy(
                logits.flatten(0, 1),
                targets.flatten(),
                reduction="none",
                ignore_index=loss_fn.ignore_index,
                label_smoothing=loss_fn.label_smoothing,
            )
            return per_sample.view(logits.shape[:2]).mean(dim=1)
        return vmap(loss_fn, in_dims=(0, None if shared else 0))(logits, targets)

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def _stacked(self, probe: tuple[Any, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The stacked parameters, each laid out as its gradient comes from the batched backward pass, so that
        accumulating a gradient is an addition, not a strided copy; found on a throwaway stack."""
        params, buffers = stack_module_state(self.models)
        inputs, targets = probe
        try:
            self.base.train()
            losses = self.losses(self._batched(shared=True)(params, buffers, inputs), targets, shared=True)
            gradients = torch.autograd.grad(losses.sum(), list(params.values()), allow_unused=True)
        except Exception as error:
            raise ConfigError(
                f"--vectorize cannot batch this model with torch.func.vmap ({type(error).__name__}: {first_line(error)}): sweep without --vectorize."
            ) from None
        params, buffers = stack_module_state(self.models)
        laid_out = {}
        for (name, stacked), gradient in zip(params.items(), gradients):
            strides = gradient.stride() if gradient is not None and not gradient.is_contiguous() else stacked.stride()
            leaf = torch.empty_strided(stacked.shape, strides, dtype=stacked.dtype, device=stacked.device)
            laid_out[name] = leaf.copy_(stacked.detach()).requires_grad_(stacked.requires_grad)
        return laid_out, buffers

    def write_back(
        self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler | None, members: Sequence[Session]
    ) -> None:
        """Put each seed's slice of the weights, buffers, optimizer and schedule state into its own model, optimizer and
        scheduler: what its checkpoint saves, and what a resumed run of it continues from."""
        state = optimizer.state_dict()
        with torch.no_grad():
            for index, (model, member) in enumerate(zip(self.models, members)):
                for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                    tensor.copy_((self.params.get(name) if name in self.params else self.buffers[name])[index])
                member.assembly.optimizer.load_state_dict(_slice_of(state, index))
                if scheduler is not None:
                    member.assembly.scheduler.load_state_dict(scheduler.state_dict())


def _slice_of(state: dict[str, Any], index: int) -> dict[str, Any]:
    """One seed's optimizer state from the stacked optimizer's: each per-parameter tensor's slice, shared scalars (a step count) as they are."""
    per_parameter = {
        key: {
            name: value[index].clone(memory_format=torch.contiguous_format) if torch.is_tensor(value) and value.dim() > 0 else value
            for name, value in entries.items()
        }
        for key, entries in state["state"].items()
    }
    return {"state": per_parameter, "param_groups": copy.deepcopy(state["param_groups"])}
