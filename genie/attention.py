"""The spatiotemporal (ST) transformer block shared by Genie's models (Genie Sec. 2.1, Fig. 4).

Shape legend: b batch, c = d model width (n_embd), t frames, h w spatial grid, s = h * w,
e width of an external conditioning vector (a latent action), n heads, k keys.

One block = spatial attention over the h*w tokens of each frame, then *causal* temporal
attention over the t positions of each spatial location, then a single per-token MLP
(Genie: "one FFW after both"). Memory grows linearly with the number of frames instead of
quadratically as in full attention. The MLP is per token and the norms are per token, so
nothing but the temporal attention mixes time, and that is causal (a 3D-conv
"feed-forward" or a norm over time would leak the future).

Spatial attention can take rotary position angles (`space_angles`, 2D RoPE, Su et al. 2021):
queries and keys are rotated by their row and column, so a query-key score depends on the two
tokens' offset and not on where they are. "Take the token one to the right" is then one rule
for every place of the grid, which is what a scrolling scene asks of the dynamics model; with
only learned absolute positions it has to be learned place by place.

Attention uses `scaled_dot_product_attention` with its default 1/sqrt(d_head) scale
(a hand-written `n_head * d_head ** -0.5` scales logits n_head times too much).

Two additions serve the later stages:
- `has_ext`: the block is conditioned on one external vector per frame (the LAM decoder's
  latent action). It enters the temporal attention: projected to the model width and added
  to that attention's input at every location of its frame.
- a temporal key/value cache (`TimeKV`): frame t attends only to frames <= t, so when the
  dynamics model samples frame T with MaskGIT, the keys and values of frames < T are the
  same at every MaskGIT step and are computed once (`forward_tokens(..., past=...)`). Read as
  a `FixedKV` (the whole buffer and a mask of its filled entries) every shape of a MaskGIT
  round stays the same as the cache fills, so one compiled graph serves a whole rollout.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class TimeKV(NamedTuple):
    """Temporal keys and values of the frames seen so far, one pair per block.

    `k`/`v` may be longer than `length` (`with_room`): the entries past `length` are free room
    that the next frames are written into in place, so extending the cache copies nothing. A
    cache is therefore continued one way only (continuing it twice overwrites the first).
    """

    k: torch.Tensor  # (b s n T d), entries [:length] along T are valid
    v: torch.Tensor  # (b s n T d)
    length: int

    def with_room(self, frames: int) -> TimeKV:
        """The same cache with room for `frames` more frames (one copy, now instead of per step)."""
        room = self.length + frames - self.k.shape[-2]
        if room <= 0:
            return self
        pad = (0, 0, 0, room)
        return TimeKV(F.pad(self.k, pad), F.pad(self.v, pad), self.length)

    def fixed(self) -> FixedKV:
        """The whole buffer with a mask of its filled entries: shapes that do not change as it fills."""
        return FixedKV(self.k, self.v, torch.arange(self.k.shape[-2], device=self.k.device) < self.length)


class FixedKV(NamedTuple):
    """A `TimeKV` buffer read-only, with its length as a mask instead of a Python int.

    Attending over it (`Attention.attend`) reads the whole buffer and masks the empty entries,
    so every shape is the same at every frame: one `torch.compile` graph (or CUDA graph) serves
    the whole rollout instead of one per cache length.
    """

    k: torch.Tensor  # (b s n T d) the whole buffer
    v: torch.Tensor  # (b s n T d)
    valid: torch.Tensor  # (T,) bool: entries that hold a frame


def space_angles(h: int, w: int, d_head: int, slots: int = 0, base: float = 100.0,
                 device: torch.device | None = None) -> torch.Tensor:  # fmt: skip
    """Rotary angles `(slots + h*w, d_head // 2)` of a frame's tokens in row-major order: the first
    half of the pairs turn with the row, the second with the column, at frequencies
    `base ** (-i / n)`; `slots` tokens in front (action tokens) get angle 0 (no rotation)."""
    if d_head % 4:
        raise ValueError(f"2D rotary positions need d_head divisible by 4, got {d_head}")
    n = d_head // 4
    freqs = base ** (-torch.arange(n, device=device, dtype=torch.float32) / n)  # (n,)
    rows = torch.arange(h, device=device, dtype=torch.float32)[:, None, None] * freqs  # (h 1 n)
    cols = torch.arange(w, device=device, dtype=torch.float32)[None, :, None] * freqs  # (1 w n)
    angles = torch.cat([rows.expand(h, w, n), cols.expand(h, w, n)], dim=-1).reshape(h * w, 2 * n)
    return torch.cat([angles.new_zeros(slots, 2 * n), angles])


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """`x (... k d)` with its pairs (i, i + d/2) turned by `angles (k d/2)` (RoPE's rotate-half form)."""
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of `(..., k, d)` tokens."""

    def __init__(self, n_embd: int, n_head: int, d_head: int, causal: bool = False):
        super().__init__()
        self.n_head, self.d_head, self.causal = n_head, d_head, causal
        self.qkv = nn.Linear(n_embd, 3 * n_head * d_head, bias=False)
        self.out = nn.Linear(n_head * d_head, n_embd, bias=False)

    def forward(self, x: torch.Tensor, angles: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(x, angles=angles)[0]

    def attend(
        self, x: torch.Tensor, past: TimeKV | FixedKV | None = None, angles: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, TimeKV | FixedKV]:
        """Attention of `x`'s tokens over `past` keys/values followed by their own.

        Returns the output and the keys/values of past and new tokens together (the cache
        for the next call). With `causal`, new token i sees every past token and new tokens <= i.
        A `FixedKV` past is only read (the new keys/values are not kept) and is returned as is.
        `angles (k d/2)`: rotary angles of the k tokens (`space_angles`), applied to queries and keys.
        """
        q, k, v = rearrange(self.qkv(x), "... k (three n d) -> three ... n k d", three=3, n=self.n_head)
        if angles is not None:
            q, k = rotate(q, angles), rotate(k, angles)
        n_new = q.shape[-2]
        if isinstance(past, FixedKV):
            return self._attend_fixed(q, k, v, past), past
        if past is None:
            cache = TimeKV(k, v, n_new)
        else:
            start, end = past.length, past.length + n_new
            if end <= past.k.shape[-2]:  # room left: write in place, the past is not copied
                past.k[..., start:end, :], past.v[..., start:end, :] = k, v
                cache = TimeKV(past.k, past.v, end)
            else:
                pk, pv = past.k[..., :start, :], past.v[..., :start, :]
                cache = TimeKV(torch.cat([pk, k], dim=-2), torch.cat([pv, v], dim=-2), end)
            k, v = cache.k[..., :end, :], cache.v[..., :end, :]
        n_all = k.shape[-2]
        mask, is_causal = None, False
        if self.causal and n_new > 1:
            if n_all == n_new:
                is_causal = True
            else:  # SDPA's is_causal aligns top-left; with a cache the diagonal is offset
                offset = n_all - n_new
                mask = torch.arange(n_all, device=x.device) <= torch.arange(n_new, device=x.device)[:, None] + offset
        # SDPA's fused (flash / memory-efficient) kernels take 4-D inputs only; 5-D falls back to
        # the unfused math path, so the leading dims are folded into one batch dim.
        lead = q.shape[:-3]
        y = F.scaled_dot_product_attention(
            q.reshape(-1, *q.shape[-3:]), k.reshape(-1, *k.shape[-3:]), v.reshape(-1, *v.shape[-3:]),
            attn_mask=mask, is_causal=is_causal,
        )  # fmt: skip
        y = y.view(*lead, *y.shape[-3:])
        return self.out(rearrange(y, "... n k d -> ... k (n d)")), cache

    def _attend_fixed(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: FixedKV) -> torch.Tensor:
        """`q k v (... n 1 d)` of one new token per sequence (a MaskGIT round's frame, the only use of a
        `FixedKV`) over the valid entries of `past` and itself."""
        if q.shape[-2] != 1:
            raise ValueError(f"a FixedKV cache is attended by one new frame at a time, got {q.shape[-2]}")
        return self.out(rearrange(_attend_one(q, k, v, past), "... n 1 d -> ... 1 (n d)"))


def _attend_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: FixedKV) -> torch.Tensor:
    """One new token `q k v (... n 1 d)` over the valid entries of `past (... n T d)` and itself: `(... n 1 d)`.

    A MaskGIT round's temporal attention is this, for every place of the frame: one query
    against at most `max_frames` keys. As products and sums it reads the cache where it lies;
    SDPA would first need the cache and the new key joined into one copied tensor, and then
    runs s * n problems of one row each (`bench/bench_time_attention.py` times both).
    """
    q = q * q.shape[-1] ** -0.5
    scores = (q * past.k).sum(-1).masked_fill(~past.valid, float("-inf"))  # (... n T)
    weights = torch.cat([scores, (q * k).sum(-1)], dim=-1).softmax(-1)  # (... n T+1), the last: itself
    return (weights[..., :-1, None] * past.v).sum(-2, keepdim=True) + weights[..., -1:, None] * v


class SpaceTimeBlock(nn.Module):
    """Blueprint entry `'space-time_attn'`: spatial attention, causal temporal attention, MLP.

    Args:
        n_embd: model width (= channels in and out).
        n_head: attention heads.
        d_head: width of each head.
        transpose: temporal attention before spatial attention.
        mlp_ratio: hidden width of the MLP relative to n_embd.
        has_ext: condition on an external vector per frame (`ext`, e.g. a latent action).
        time_attn_kw: options of the temporal attention; `key_dim` is the width e of the
            external vectors (default n_embd).
    """

    def __init__(
        self,
        n_embd: int,
        n_head: int = 8,
        d_head: int = 64,
        transpose: bool = False,
        mlp_ratio: int = 4,
        has_ext: bool = False,
        time_attn_kw: dict | None = None,
    ):
        super().__init__()
        time_attn_kw = dict(time_attn_kw or {})
        key_dim = time_attn_kw.pop("key_dim", n_embd)
        if time_attn_kw:
            raise TypeError(f"unknown time_attn_kw option(s) {sorted(time_attn_kw)}; known: key_dim")
        self.in_channels = self.out_channels = n_embd
        self.transpose, self.has_ext = transpose, has_ext
        self.norm_space, self.norm_time, self.norm_mlp = (nn.LayerNorm(n_embd) for _ in range(3))
        self.space = Attention(n_embd, n_head, d_head)
        self.time = Attention(n_embd, n_head, d_head, causal=True)
        self.ext = nn.Linear(key_dim, n_embd) if has_ext else None
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, mlp_ratio * n_embd), nn.GELU(), nn.Linear(mlp_ratio * n_embd, n_embd)
        )  # fmt: skip

    def forward(self, x: torch.Tensor, ext: torch.Tensor | None = None) -> torch.Tensor:
        """Video `(b c t h w)` (and `ext (b t e)` when conditioned) -> `(b c t h w)`."""
        h, w = x.shape[-2:]
        tokens, _ = self.forward_tokens(rearrange(x, "b c t h w -> b t (h w) c"), ext)
        return rearrange(tokens, "b t (h w) c -> b c t h w", h=h, w=w)

    def forward_tokens(
        self, x: torch.Tensor, ext: torch.Tensor | None = None, past: TimeKV | FixedKV | None = None,
        angles: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, TimeKV | FixedKV]:  # fmt: skip
        """`(b t s c)` -> `(b t s c)` and the temporal keys/values of past + these frames.

        With `past`, `x` holds the frames that follow the cached ones; `angles (s d_head/2)`: the
        spatial attention's rotary angles (`space_angles`).
        """
        if self.has_ext and (ext is None or ext.shape[:2] != x.shape[:2]):
            got = None if ext is None else tuple(ext.shape)
            raise ValueError(f"this block is conditioned (has_ext): pass ext (b, t, e) for its t frames, got {got}")
        kv = None
        for step in ("time", "space") if self.transpose else ("space", "time"):
            if step == "space":  # --- spatial attention, within each frame ---
                x = x + self.space(self.norm_space(x), angles)
            else:  # --- causal temporal attention, per location ---
                y, kv = self._time(x, ext, past)
                x = x + y
        return x + self.mlp(self.norm_mlp(x)), kv

    def _time(
        self, x: torch.Tensor, ext: torch.Tensor | None, past: TimeKV | FixedKV | None
    ) -> tuple[torch.Tensor, TimeKV | FixedKV]:
        h = self.norm_time(x)
        if self.ext is not None:
            h = h + rearrange(self.ext(ext), "b t c -> b t 1 c")
        y, kv = self.time.attend(rearrange(h, "b t s c -> b s t c"), past)
        return rearrange(y, "b s t c -> b t s c"), kv
