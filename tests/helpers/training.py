"""Training a dynamics model on a tiny world whose rule is known, and scoring what it learned."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genie.dynamics import DynamicsModel

World = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]  # (b, g) -> tokens, actions


def last_frame_ce(model: DynamicsModel, world: World, steps: int, drive: Callable = lambda acts: acts) -> float:
    """Train `model` for `steps` AdamW steps on batches of 32 clips of `world` (actions passed
    through `drive`), then the cross-entropy of its logits for a fully masked last frame of 256
    fresh clips."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(steps):
        tokens, acts = world(32, g)
        loss = model.compute_loss(tokens, drive(acts))
        opt.zero_grad()
        loss.backward()
        opt.step()
    tokens, acts = world(256, g)
    inputs = tokens.clone()
    inputs[:, -1] = model.mask_id
    with torch.no_grad():
        logits = model.eval().logits(inputs, drive(acts))[:, -1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, -1].reshape(-1)).item()
