"""MaskGIT (Chang et al. 2022): the masking used in training and the iterative decoder.

Parameter-free and model-agnostic: the dynamics model supplies a function from a partly
masked frame to logits (as google-research/maskgit's `decode(..., tokens_to_logits)`), so
the schedule lives here once for training and sampling.

Shape legend: b batch, t frames, s tokens per frame, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

STEPS = 25  # decoding rounds per frame (Genie Sec. 2.1 samples with 25 MaskGIT steps): every default links here


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
    per_frame: bool = False,
) -> torch.Tensor:
    """Which tokens to mask in a training clip, `(b t s)` bool.

    Each sample draws a rate ~ U(rate) (Genie Sec. 2.1: uniformly between 0.5 and 1) and each
    token of frames 1.. is masked with that probability (Bernoulli). Frame 0 is never masked:
    a clip whose every frame is masked has nothing to predict from.

    `per_frame=True` draws a rate for each frame instead, so a heavily masked frame often
    follows a lightly masked one. Sampling predicts each new frame from clean past frames; with
    one rate per clip of at least 0.5, training never shows that case.
    """
    lo, hi = rate
    p = lo + (hi - lo) * torch.rand(b, t if per_frame else 1, 1, device=device, generator=generator)
    mask = torch.rand(b, t, s, device=device, generator=generator) < p
    mask[:, 0] = False
    return mask


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of `probs (... V)` by inverting the CDF with a single uniform per row.

    `torch.multinomial` draws an exponential variate per *entry* (V of them per token), which was
    a third of a CPU generation step; this needs one per token (`side="right"` never picks an
    entry of probability 0).
    """
    cdf = probs.cumsum(-1)
    u = torch.rand(*probs.shape[:-1], 1, device=probs.device, generator=generator) * cdf[..., -1:]
    return torch.searchsorted(cdf, u, side="right")[..., 0].clamp_(max=probs.shape[-1] - 1)


class Decoded(NamedTuple):
    tokens: torch.Tensor  # (b s) ids
    expected: torch.Tensor | None  # (b s d): each token's expected value (see `decode`), or None


def decode(
    logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    b: int,
    s: int,
    mask_id: int,
    steps: int = STEPS,
    temperature: float = 1.0,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    values: torch.Tensor | None = None,
) -> Decoded:
    """Fill one frame of `s` tokens from all-masked in `steps` rounds; returns the `(b s)` ids.

    Each round calls `logits_fn(frame (b s), positions (b m))`, which returns the logits
    `(b m V)` of the m still-masked positions (every row has the same m), samples them (argmax
    when `temperature == 0`), commits the most confident and keeps the rest masked so that a
    `cosine_schedule` fraction of the frame stays masked. Committed tokens are fed back at the
    next round (feeding the same input every round is one-shot generation in
    disguise); at least one token is committed per round and none is masked after the last.
    Only masked positions are projected to the vocabulary and sampled: on average a third of
    the tokens are already committed, and their logits would be thrown away.

    `values (V d)`: a vector per token id (the tokenizer's quantizer codes). With it, each
    token also gets its expected vector under the (untempered) distribution of the round that
    committed it, `sum_v p(v) values[v]`: where the model is unsure between codes, the mean of
    their codes instead of one of them (`Decoded.expected`).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not temperature >= 0:  # a negative one would sample the least likely tokens
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    frame = torch.full((b, s), mask_id, dtype=torch.long, device=device)
    expected = None if values is None else torch.zeros(b, s, values.shape[-1], device=device)
    positions = torch.arange(s, device=device).expand(b, s)  # (b m) still masked
    for i in range(steps):
        logits = logits_fn(frame, positions).float()  # (b m V)
        probs = torch.softmax(logits, dim=-1)
        if temperature == 0:
            sampled = logits.argmax(dim=-1)
        else:
            tempered = probs if temperature == 1 else torch.softmax(logits / temperature, dim=-1)
            sampled = sample_categorical(tempered, generator)
        # the model's (untempered) probability of each choice; only its order matters, so no log
        confidence = torch.gather(probs, -1, sampled[..., None])[..., 0]  # (b m)
        m = positions.shape[1]
        keep = 0 if i == steps - 1 else max(min(math.floor(s * cosine_schedule((i + 1) / steps)), m - 1), 0)
        order = confidence.argsort(dim=1)  # least confident first: those stay masked
        commit = order[:, keep:]
        where = positions.gather(1, commit)  # (b c) committed this round
        frame = frame.scatter(1, where, sampled.gather(1, commit))
        if expected is not None:
            mean = probs.gather(1, commit[..., None].expand(-1, -1, probs.shape[-1])) @ values.to(probs)  # (b c d)
            expected = expected.scatter(1, where[..., None].expand_as(mean), mean)
        positions = positions.gather(1, order[:, :keep])
        if keep == 0:
            break
    return Decoded(frame, expected)
