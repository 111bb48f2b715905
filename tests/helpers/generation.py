"""Checks that a dynamics model's generation paths agree."""

import torch

from genie.dynamics import DynamicsModel


def generate_every_way(model: DynamicsModel, tokens: torch.Tensor, acts: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Greedy frames of `model` after `tokens`, asserting that the cached and compiled paths give
    exactly the uncached ones (leaves the model's rounds compiled)."""
    kw = dict(steps=5, temperature=0.0, num_frames=num_frames)
    uncached = model.generate(tokens, acts, use_cache=False, **kw)
    assert torch.equal(model.generate(tokens, acts, use_cache=True, **kw), uncached)
    torch._dynamo.reset()  # dynamo caps the recompiles of one function per process: start each model afresh
    model.compile_rounds()
    assert torch.equal(model.generate(tokens, acts, **kw), uncached)
    return uncached
