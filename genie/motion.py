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
