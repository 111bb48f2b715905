"""Learning-rate schedule shared by both training stages (Genie App. F, Tables 15-17):
linear warm-up to `lr`, then cosine decay to `min_lr` by `total_steps` (constant if equal)."""

import math


def warmup_cosine(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return lr
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
