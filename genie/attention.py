"""The spatiotemporal (ST) transformer block shared by Genie's models (Genie Sec. 2.1, Fig. 4).

Shape legend: b batch, c = d model width (n_embd), t frames, h w spatial grid, s = h * w.

One block = spatial attention over the h*w tokens of each frame, then *causal* temporal
attention over the t positions of each spatial location, then a single per-token MLP
(Genie: "one FFW after both"). Memory grows linearly with the number of frames instead of
quadratically as in full attention. The MLP is per token and the norms are per token, so
nothing but the temporal attention mixes time, and that is causal (PITFALLS: a 3D-conv
"feed-forward" or a norm over time would leak the future).

Attention uses `scaled_dot_product_attention` with its default 1/sqrt(d_head) scale
(PITFALLS: a hand-written `n_head * d_head ** -0.5` scales logits n_head times too much).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of `(..., n, d)` tokens."""

    def __init__(self, n_embd: int, n_head: int, d_head: int, causal: bool = False):
        super().__init__()
        self.n_head, self.causal = n_head, causal
        self.qkv = nn.Linear(n_embd, 3 * n_head * d_head, bias=False)
        self.out = nn.Linear(n_head * d_head, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "... n (three h d) -> three ... h n d", three=3, h=self.n_head)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out(rearrange(y, "... h n d -> ... n (h d)"))


class SpaceTimeBlock(nn.Module):
    """Blueprint entry `'space-time_attn'`: spatial attention, causal temporal attention, MLP.

    Args:
        n_embd: model width (= channels in and out).
        n_head: attention heads.
        d_head: width of each head.
        transpose: temporal attention before spatial attention.
        mlp_ratio: hidden width of the MLP relative to n_embd.
    """

    def __init__(self, n_embd: int, n_head: int = 8, d_head: int = 64, transpose: bool = False, mlp_ratio: int = 4):
        super().__init__()
        self.in_channels = self.out_channels = n_embd
        self.transpose = transpose
        self.norm_space, self.norm_time, self.norm_mlp = (nn.LayerNorm(n_embd) for _ in range(3))
        self.space = Attention(n_embd, n_head, d_head)
        self.time = Attention(n_embd, n_head, d_head, causal=True)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, mlp_ratio * n_embd), nn.GELU(), nn.Linear(mlp_ratio * n_embd, n_embd)
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(x, "b c t h w -> b t (h w) c")
        tokens = self.forward_tokens(tokens)
        return rearrange(tokens, "b t (h w) c -> b c t h w", h=h, w=w)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """`(b t s c)` -> `(b t s c)`."""
        for step in (self._time, self._space) if self.transpose else (self._space, self._time):
            x = step(x)
        return x + self.mlp(self.norm_mlp(x))

    def _space(self, x: torch.Tensor) -> torch.Tensor:  # --- spatial attention, within each frame ---
        return x + self.space(self.norm_space(x))

    def _time(self, x: torch.Tensor) -> torch.Tensor:  # --- causal temporal attention, per location ---
        y = self.time(rearrange(self.norm_time(x), "b t s c -> b s t c"))
        return x + rearrange(y, "b s t c -> b t s c")
