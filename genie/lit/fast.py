"""What keeps a training step fast, shared by both stages: a fused AdamW and an
opt-in `torch.compile` of the networks' loss functions.

Mixed precision is the trainer's (`trainer.precision: bf16-mixed` in the GPU presets):
Lightning's autocast runs matmuls and attention in bf16 while parameters, optimizer state,
norms and the losses (computed in fp32 by the networks) stay fp32: bf16 weights and optimizer
state would round small updates away.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def adamw(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], weight_decay: float
) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one kernel for all parameters instead of several per
    tensor) on the devices that have it, else PyTorch's default multi-tensor version."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cuda", "cpu") for p in params)
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=fused or None)


def compile_methods(module: nn.Module, *names: str) -> None:
    """Replace `module.<name>` by its `torch.compile`d version, for each name, once.

    The loss functions are compiled rather than `forward` because training calls them
    (`compute_losses`), and compiling bound methods leaves parameter names, and so the
    checkpoints, unchanged (wrapping the module in `torch.compile` would prefix `_orig_mod.`).
    """
    for name in names:
        method = getattr(module, name)
        if not getattr(method, "_genie_compiled", False):
            compiled = torch.compile(method, dynamic=False)  # fixed training shapes; avoids symbolic-shape bugs
            compiled._genie_compiled = True
            setattr(module, name, compiled)
