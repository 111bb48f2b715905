"""Learning-rate schedule shared by both training stages (Genie App. F, Tables 15-17):
linear warm-up to `lr`, then cosine decay to `min_lr` by `total_steps` (constant if equal)."""

import math

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return lr
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    opt: torch.optim.Optimizer, module: L.LightningModule, *, lr: float, min_lr: float, warmup_steps: int
) -> LambdaLR:
    """`warmup_cosine` as a per-step scheduler; the decay ends at the trainer's `max_steps`
    (read when stepping, so `--trainer.max_steps` on the command line is honoured)."""

    def factor(step: int) -> float:
        max_steps = module.trainer.max_steps
        total = max_steps if max_steps > 0 else warmup_steps
        return warmup_cosine(step, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, total_steps=total) / lr

    return LambdaLR(opt, factor)
