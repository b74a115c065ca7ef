"""On a CUDA machine: a training pass with a cosine schedule, warm-up, clipping, accumulation and bf16 (SGD and AdamW)
makes the same number of synchronizing CUDA calls for 20 batches as for 40: none per batch.

Run from the repository root with the package installed and MNIST imported (`deep-learning data import DIR`).
"""

from __future__ import annotations

import itertools
import sys

import torch
import torch.nn as nn

from deep_learning.benchmarks.syncs import cuda_syncs
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.splits import load_splits
from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model
from deep_learning.core.optimization import build_optimizer, build_schedule, lr_scheduler
from deep_learning.core.precision import grad_scaler, with_amp
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.training import train
from deep_learning.experiment.controls import stepper_for

LENGTHS = (20, 40)


def syncs_per_pass(optimizer_name: str, amp: str, device: torch.device) -> list[int]:
    config = TrainConfig(
        optimizer=optimizer_name,
        amp=amp,
        lr_schedule="cosine",
        warmup_epochs=1,
        epochs=2,
        grad_clip_norm=0.5,
        accumulate_batches=2,
        train_subset=5000,
    )
    train_dl = make_loaders(config, load_splits(config), device)[0]
    counts = []
    for length in LENGTHS:
        set_seed(0)
        model = build_model().to(device)
        batches = list(itertools.islice(train_dl, length))
        optimizer, scaler = build_optimizer(model.parameters(), config), grad_scaler(device, amp)
        stepper = stepper_for(config, optimizer, scaler, lr_scheduler(optimizer, build_schedule(config, length)), 0)

        def run():
            return train(
                with_amp(model, device, amp),
                batches,
                nn.CrossEntropyLoss(),
                optimizer,
                accuracy_metric().to(device),
                device,
                stepper=stepper,
            )

        run()  # warm-up: first-call allocations and kernel loads
        counts.append(cuda_syncs(run))
    return counts


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 1
    device = torch.device("cuda")
    failed = False
    for optimizer_name, amp in (("sgd", "bf16"), ("adamw", "bf16"), ("sgd", "fp16"), ("adamw", "fp16")):
        counts = syncs_per_pass(optimizer_name, amp, device)
        verdict = "PASS" if counts[0] == counts[1] else "FAIL"
        failed |= verdict == "FAIL"
        print(
            f"{verdict} {optimizer_name} {amp} cosine+warm-up+clip+accumulate: synchronizing calls per pass of {LENGTHS} batches: {counts}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
