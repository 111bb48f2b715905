"""Tokens as their quantizer digits: an embedding and an output head for the dynamics model.

Shape legend: V codebook size, D digits per token (quantizer dimensions), L = sum of the
levels, e model width, `...` any leading shape.

An FSQ token (Mentzer et al. 2023) is a point of a grid with `levels[i]` values per dimension,
and its id reads those values as digits in a mixed radix (dimension 0 least significant,
`genie.quantize.FSQ`); an LFQ token is the same with `levels = [2] * bits`. Two codes that
share most digits decode to similar patches. A plain embedding and a V-way softmax see none
of that: every one of the V codes is learned on its own, and a patch shifted by part of a token
is a new, unrelated class. Here

- `DigitEmbedding` embeds a token as the sum of one learned vector per digit (D + 1 tables of
  `levels[i]` + 1 rows, the extra row the mask), so codes that share digits share input;
- `DigitHead` predicts one softmax per dimension and returns the log-probability of every
  code as the sum of its digits' log-probabilities: `log p(code) = sum_i log p_i(digit_i)`.
  That is a normalised distribution over the V codes, so cross-entropy, argmax, MaskGIT's
  confidences and sampling use it as they use softmax logits, and the cross-entropy of a code
  is the sum of its digits' cross-entropies: a near miss (one digit off by one) is only
  partly wrong.

MAGVIT-v2 (Yu et al. 2023, Sec. 3.1) predicts its 2^18 LFQ codes the same way, as factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def digit_table(levels: Sequence[int]) -> torch.Tensor:
    """`(V, D)` digits of every code id in the mixed radix `levels` (dimension 0 least significant)."""
    levels = [int(n) for n in levels]
    if not levels or min(levels) < 2:
        raise ValueError(f"token_levels must be a non-empty list of integers >= 2, got {levels}")
    radix = torch.cumprod(torch.tensor([1] + levels[:-1]), 0)
    ids = torch.arange(int(torch.tensor(levels).prod()))
    return (ids[:, None] // radix) % torch.tensor(levels)


def _row_offsets(levels: Sequence[int], extra: int) -> torch.Tensor:
    """First row of each dimension's block in one table of `levels[i] + extra` rows per dimension."""
    sizes = torch.tensor([int(n) + extra for n in levels])
    return torch.cumsum(sizes, 0) - sizes


class DigitEmbedding(nn.Module):
    """Token ids `(...)` in `[0, V]` (V: the mask id) -> `(..., e)`: the sum of their digits' embeddings."""

    def __init__(self, levels: Sequence[int], dim: int):
        super().__init__()
        digits = digit_table(levels)  # (V D)
        mask = torch.tensor([[int(n) for n in levels]])  # each dimension's extra row: "masked"
        rows = torch.cat([digits, mask]) + _row_offsets(levels, extra=1)  # (V+1 D)
        self.register_buffer("rows", rows, persistent=False)
        self.table = nn.Embedding(int(sum(levels)) + len(levels), dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.rows[ids]).sum(-2)  # (... D e) -> (... e)


class DigitHead(nn.Module):
    """Features `(..., e)` -> log-probabilities `(..., V)` of every code, one softmax per digit."""

    def __init__(self, dim: int, levels: Sequence[int]):
        super().__init__()
        self.levels = [int(n) for n in levels]
        rows = digit_table(levels) + _row_offsets(levels, extra=0)  # (V D): each code's digit rows
        # (L V): which digit rows make up each code, so that summing is one matrix product
        # (cheaper than the V-wide linear head it replaces, and so is its gradient)
        member = torch.zeros(int(sum(levels)), rows.shape[0]).scatter_(0, rows.T, 1.0)
        self.register_buffer("member", member, persistent=False)
        self.proj = nn.Linear(dim, int(sum(levels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_digit = self.proj(x).float().split(self.levels, dim=-1)
        logp = torch.cat([part.log_softmax(-1) for part in per_digit], dim=-1)  # (... L)
        return logp @ self.member  # (... V)
