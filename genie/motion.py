"""How far the scene moves between two frames: phase correlation (Kuglin & Hines 1975).

Shape legend: n frame pairs, c channels, H W pixels.

CoinRun's camera follows the agent, so when the agent runs right the whole scene shifts left:
the shift of the scene between consecutive frames is a direct, model-free reading of what an
action did. Phase correlation finds it as the peak of the inverse FFT of the normalised cross
power spectrum; the peak's larger neighbour gives the sub-pixel part.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Shift(NamedTuple):
    dx: torch.Tensor  # (n) pixels the content moved right (+) or left (-)
    dy: torch.Tensor  # (n) pixels the content moved down (+) or up (-)
    peak: torch.Tensor  # (n) height of the correlation peak in (0, 1]: how much of the picture agrees


def _gray(frames: torch.Tensor) -> torch.Tensor:
    """`(n c H W)` or `(n H W)` -> `(n H W)` float, mean over channels, each frame's mean removed."""
    x = frames.float()
    if x.dim() == 4:
        x = x.mean(1)
    return x - x.mean(dim=(-2, -1), keepdim=True)


def phase_shift(a: torch.Tensor, b: torch.Tensor) -> Shift:
    """The translation that takes frames `a` to frames `b` (both `(n c H W)` or `(n H W)`).

    Returns shifts in pixels (the integer peak plus a sub-pixel offset), wrapped to (-H/2, H/2].
    """
    if a.shape != b.shape:
        raise ValueError(f"frames of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    ga, gb = _gray(a), _gray(b)
    H, W = ga.shape[-2:]
    fa, fb = torch.fft.rfft2(ga), torch.fft.rfft2(gb)
    cross = fb * fa.conj()
    r = torch.fft.irfft2(cross / cross.abs().clamp(min=1e-9), s=(H, W))  # (n H W)
    flat = r.flatten(1).argmax(1)
    iy, ix = flat // W, flat % W
    n = torch.arange(r.shape[0], device=r.device)
    peak = r[n, iy, ix]

    def offset(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Foroosh et al. 2002: for a shift of integer + d, the neighbour on d's side holds
        sinc(1 - |d|) against the peak's sinc(d), so |d| = side / (side + peak)."""
        side = torch.maximum(left, right).clamp(min=0)
        sign = torch.where(right >= left, 1.0, -1.0).to(r.dtype)
        return sign * side / (side + peak).clamp(min=1e-9)

    oy = offset(r[n, (iy - 1) % H, ix], r[n, (iy + 1) % H, ix])
    ox = offset(r[n, iy, (ix - 1) % W], r[n, iy, (ix + 1) % W])
    dy = torch.where(iy > H // 2, iy - H, iy).to(r.dtype) + oy
    dx = torch.where(ix > W // 2, ix - W, ix).to(r.dtype) + ox
    return Shift(dx, dy, peak)


def move(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """`frames (n c H W)` each with its content moved by its own whole-pixel shift `shifts (n 2)`
    as (dx, dy) (right and down positive), the edge pixels repeated into the space left behind."""
    n, _, H, W = frames.shape
    shifts = shifts.to(frames.device).long()
    rows = (torch.arange(H, device=frames.device) - shifts[:, 1:2]).clamp(0, H - 1)  # (n H) source row
    cols = (torch.arange(W, device=frames.device) - shifts[:, 0:1]).clamp(0, W - 1)  # (n W) source column
    out = frames.gather(2, rows[:, None, :, None].expand(-1, frames.shape[1], -1, W))
    return out.gather(3, cols[:, None, None, :].expand(-1, frames.shape[1], H, -1))


def closest_shift(before: torch.Tensor, after: torch.Tensor, max_shift: int) -> torch.Tensor:
    """The whole-pixel shift `(n 2)` as (dx, dy), |dx|, |dy| <= `max_shift`, that takes each frame of
    `before (n c H W)` closest (squared error of the channel mean, edges repeated, as `move`) to its
    `after`; among equally close shifts the smallest move wins, so an unchanged frame gets (0, 0).

    Every shift is scored at once: the error of a shift is sum(moved^2) - 2 sum(moved * after) +
    sum(after^2), and over all shifts the first two are a box filter and a cross-correlation of
    the once-padded frame, computed by FFT."""
    if before.shape != after.shape:
        raise ValueError(f"frames of different shapes: {tuple(before.shape)} and {tuple(after.shape)}")
    a, b = before.double().mean(1, keepdim=True), after.double().mean(1, keepdim=True)  # (n 1 H W)
    n, _, H, W = a.shape
    r = max_shift
    if n == 0:
        return torch.zeros(0, 2, dtype=torch.long, device=a.device)
    big = F.pad(a, (r, r, r, r), mode="replicate")[:, 0]  # (n H+2r W+2r)
    size2 = big.shape[-2:]

    def correlate(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:  # (n 2r+1 2r+1), by FFT
        spectrum = torch.fft.rfft2(x) * torch.fft.rfft2(kernel, s=size2).conj()
        return torch.fft.irfft2(spectrum, s=size2)[:, : 2 * r + 1, : 2 * r + 1]

    cross = correlate(big, b[:, 0])  # [i, j]: sum of after times the padded frame at offset (i, j)
    energy = correlate(big.square(), torch.ones_like(b[:, 0]))  # sum of the moved frame's squares
    error = energy - 2 * cross  # + sum(after^2), the same for every shift
    # offset (i, j) in the padded frame is the content moved by dx = r - j, dy = r - i
    span = torch.arange(r, -r - 1, -1, device=a.device)  # shift at each offset
    size = span[:, None].abs() + span[None, :].abs()  # (2r+1 2r+1) how far each shift moves
    scale = error.flatten(1).abs().amax(1)[:, None, None] + 1.0
    best = (error + 1e-9 * scale * size).flatten(1).argmin(1)  # ties (to rounding): the smaller move
    return torch.stack([span[best % (2 * r + 1)], span[best // (2 * r + 1)]], dim=1)
