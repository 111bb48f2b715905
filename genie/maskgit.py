"""MaskGIT (Chang et al. 2022): the masking used in training and the iterative decoder.

Parameter-free and model-agnostic: the dynamics model supplies a function from a partly
masked frame to logits (as google-research/maskgit's `decode(..., tokens_to_logits)`), so
the schedule lives here once for training and sampling.

Shape legend: b batch, t frames, s tokens per frame, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def cosine_schedule(progress: float) -> float:
    """Fraction of a frame's tokens still masked after `progress` in [0, 1] of the decoding
    steps (MaskGIT Sec. 3.2: gamma(r) = cos(pi r / 2); 1 at the start, 0 at the end)."""
    return math.cos(math.pi / 2 * min(max(progress, 0.0), 1.0))


def training_mask(
    b: int,
    t: int,
    s: int,
    rate: tuple[float, float] = (0.5, 1.0),
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which tokens to mask in a training clip, `(b t s)` bool.

    Each sample draws a rate ~ U(rate) (Genie Sec. 2.1: uniformly between 0.5 and 1) and each
    token of frames 1.. is masked with that probability (Bernoulli). Frame 0 is never masked:
    it is the context every prediction starts from (PITFALLS: never mask the context).
    """
    lo, hi = rate
    p = lo + (hi - lo) * torch.rand(b, 1, 1, device=device, generator=generator)
    mask = torch.rand(b, t, s, device=device, generator=generator) < p
    mask[:, 0] = False
    return mask


def decode(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    b: int,
    s: int,
    mask_id: int,
    steps: int = 25,
    temperature: float = 1.0,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill one frame of `s` tokens from all-masked in `steps` rounds; returns `(b s)` ids.

    Each round runs `logits_fn` on the current frame (committed tokens and mask ids), samples
    every masked token (argmax when `temperature == 0`), commits the most confident ones and
    keeps the rest masked so that a `cosine_schedule` fraction of the frame stays masked. The
    committed tokens are fed back at the next round (PITFALLS: feeding the same input every
    round is one-shot generation in disguise); at least one token is committed per round and
    none is masked after the last.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    frame = torch.full((b, s), mask_id, dtype=torch.long, device=device)
    masked = torch.ones(b, s, dtype=torch.bool, device=device)
    n_masked = s
    for i in range(steps):
        logp = torch.log_softmax(logits_fn(frame).float(), dim=-1)  # (b s V)
        if temperature > 0:
            probs = torch.softmax(logp / temperature, dim=-1)
            sampled = torch.multinomial(probs.reshape(b * s, -1), 1, generator=generator).view(b, s)
        else:
            sampled = logp.argmax(dim=-1)
        confidence = torch.gather(logp, -1, sampled[..., None])[..., 0]
        sampled = torch.where(masked, sampled, frame)
        confidence = torch.where(masked, confidence, torch.full_like(confidence, math.inf))
        keep_masked = min(math.floor(s * cosine_schedule((i + 1) / steps)), n_masked - 1)
        masked = torch.zeros_like(masked)
        if keep_masked > 0:  # the least confident of this round's samples stay masked
            masked.scatter_(1, confidence.topk(keep_masked, dim=1, largest=False).indices, True)
        frame = torch.where(masked, torch.full_like(sampled, mask_id), sampled)
        n_masked = max(keep_masked, 0)
    return frame
