"""Metrics for video reconstruction and generation, and for discrete codes.

Shape legend (as in `genie.data`):
    b batch, c channels, t frames, h w height and width

Videos follow the project's pixel convention: float `(b c t h w)` in [-1, 1], so the
default `data_range` is 2.0. Every function is plain vectorized tensor code (no Python
loop over samples or frames), runs on whatever device its inputs live on, needs no
gradients (wrap calls in `torch.no_grad()` / `torch.inference_mode()` as usual) and
computes in fp32 at least: bf16 / fp16 inputs are cast to fp32 first, fp64 stays fp64.

- `psnr`, `mean_psnr`: peak signal-to-noise ratio per frame / averaged.
- `ssim`: structural similarity (Wang et al., 2004) per frame.
- `codebook_usage`, `CodebookCounter`: how much of a VQ codebook is used, and how evenly.
- `normalized_mutual_info`: agreement of two labelings (latent vs true actions).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor

__all__ = [
    "PSNR_CAP",
    "CodebookCounter",
    "CodebookUsage",
    "codebook_usage",
    "codebook_usage_from_counts",
    "contingency_table",
    "mean_psnr",
    "normalized_mutual_info",
    "psnr",
    "ssim",
]

PSNR_CAP = 100.0
"""dB that `mean_psnr` assigns to identical frames (whose PSNR is +inf), so averages stay finite.

100 dB is far above anything a lossy model reaches (fp32 rounding noise on [-1, 1] pixels
is ~140 dB, uint8 quantisation noise ~59 dB), so the cap only ever replaces exact copies.
"""

_SSIM_WIN = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _as_float(x: Tensor) -> Tensor:
    """Cast integer / half-precision tensors to fp32; fp32 and fp64 pass through."""
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _check_videos(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if x.ndim != 5 or x.shape != y.shape:
        raise ValueError(f"expected two videos (b c t h w) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = _as_float(x), _as_float(y)
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype)


# --------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio of each frame, in dB.

    Standard definition (e.g. Gonzalez & Woods; `skimage.metrics.peak_signal_noise_ratio`)::

        PSNR = 10 * log10(data_range**2 / MSE),   MSE = mean over (c, h, w) of (x - y)**2

    Args:
        x, y: videos `(b c t h w)` of the same shape; [-1, 1] by convention.
        data_range: max - min of the pixel range (2.0 for [-1, 1]).

    Returns:
        `(b t)` PSNR per frame. Identical frames (MSE == 0) give `+inf`, never NaN; use
        `mean_psnr` for a finite average.
    """
    x, y = _check_videos(x, y)
    mse = reduce((x - y).square(), "b c t h w -> b t", "mean")
    # data_range**2 / 0 = +inf and log10(+inf) = +inf: identical frames are +inf, not NaN.
    return 10.0 * torch.log10(data_range**2 / mse)


def mean_psnr(x: Tensor, y: Tensor, data_range: float = 2.0, cap: float = PSNR_CAP) -> Tensor:
    """Mean per-frame PSNR over all samples and frames, in dB (a scalar tensor).

    This is the usual video PSNR: the average of per-frame `psnr` values (not the PSNR of
    the pooled MSE). Each frame's PSNR is capped at `cap` (`PSNR_CAP` = 100 dB by default),
    so identical frames, whose PSNR is +inf, count as `cap` and the mean stays finite.
    """
    return psnr(x, y, data_range).clamp(max=cap).mean()


# --------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Structural similarity index of each frame (Wang, Bovik, Sheikh & Simoncelli, 2004).

    Follows the paper's reference setting, identical to `skimage.metrics.structural_similarity`
    with `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range`
    (applied per channel, then averaged)::

        mu_x = w * x,  sigma_x^2 = w * x^2 - mu_x^2,  sigma_xy = w * (x y) - mu_x mu_y
        SSIM = (2 mu_x mu_y + C1) (2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2))
        C1 = (0.01 L)^2,  C2 = (0.03 L)^2,  L = data_range

    where `w *` is correlation with a normalised 11x11 Gaussian window of sigma 1.5, computed
    per channel (depthwise, separable) with "valid" padding: only windows that lie entirely
    inside the frame are used, as skimage does by cropping its map by the window radius.
    The SSIM map is averaged over pixels and channels.

    Frames smaller than 11 px in height or width use a square window of the largest odd size
    that fits (`min(h, w)`, minus one if even), still with sigma 1.5; a 1-px frame therefore
    compares single pixels (luminance term only, since all variances are 0).

    Args:
        x, y: videos `(b c t h w)` of the same shape; [-1, 1] by convention.
        data_range: max - min of the pixel range (2.0 for [-1, 1]).

    Returns:
        `(b t)` SSIM per frame, in [-1, 1]; 1 for identical frames.
    """
    x, y = _check_videos(x, y)
    b, c, t, h, w = x.shape
    win = min(_SSIM_WIN, h, w)
    win -= 1 - win % 2  # largest odd size <= min(11, h, w)

    frames = rearrange([x, y, x * x, y * y, x * y], "s b c t h w -> (b t) (s c) h w")
    g = _gaussian_1d(win, _SSIM_SIGMA, x.dtype, x.device)
    groups = frames.shape[1]
    frames = F.conv2d(frames, g.view(1, 1, win, 1).expand(groups, 1, win, 1), groups=groups)
    frames = F.conv2d(frames, g.view(1, 1, 1, win).expand(groups, 1, 1, win), groups=groups)
    mu_x, mu_y, e_xx, e_yy, e_xy = rearrange(frames, "n (s c) h w -> s n c h w", s=5)

    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov_xy = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_xy + c1) * (2 * cov_xy + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    return reduce(ssim_map, "(b t) c h w -> b t", "mean", b=b, t=t)


# --------------------------------------------------------------------------------------
# Codebook usage
# --------------------------------------------------------------------------------------


class CodebookUsage(NamedTuple):
    """How much of a codebook a set of indices uses.

    fraction_used: float scalar tensor, fraction of the codes that occur at least once.
    perplexity: float scalar tensor, exp(entropy) of the empirical code distribution, in
        [1, codebook_size]: the number of equally used codes with the same entropy.
    counts: `(codebook_size,)` LongTensor, occurrences of each code.
    """

    fraction_used: Tensor
    perplexity: Tensor
    counts: Tensor


def codebook_usage_from_counts(counts: Tensor) -> CodebookUsage:
    """`CodebookUsage` from per-code occurrence counts `(codebook_size,)`.

    Perplexity is `exp(H)`, `H = -sum_k p_k log p_k` in nats with `p = counts / counts.sum()`
    and `0 log 0 = 0` (the standard VQ-VAE codebook perplexity). With no occurrences at all
    both `fraction_used` and `perplexity` are 0 (rather than NaN).
    """
    if counts.ndim != 1:
        raise ValueError(f"counts must be 1-D (codebook_size,), got shape {tuple(counts.shape)}")
    counts = counts.long()
    p = counts.double() / counts.sum().clamp(min=1)
    entropy = -torch.special.xlogy(p, p).sum()
    nonempty = counts.sum() > 0
    perplexity = torch.where(nonempty, entropy.exp(), torch.zeros_like(entropy)).float()
    fraction_used = (counts > 0).float().mean()
    return CodebookUsage(fraction_used, perplexity, counts)


def _code_counts(indices: Tensor, codebook_size: int) -> Tensor:
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise ValueError(f"indices must be an integer tensor, got {indices.dtype}")
    flat = indices.reshape(-1).long()
    if flat.numel() and (flat.min() < 0 or flat.max() >= codebook_size):
        raise ValueError(
            f"indices must lie in [0, {codebook_size}), got range [{flat.min().item()}, {flat.max().item()}]"
        )
    return torch.bincount(flat, minlength=codebook_size)


def codebook_usage(indices: Tensor, codebook_size: int) -> CodebookUsage:
    """Codebook usage of a tensor of code indices (any shape, integers in [0, codebook_size)).

    See `CodebookUsage` / `codebook_usage_from_counts` for the definitions. Raises
    `ValueError` on non-integer indices or indices outside [0, codebook_size).
    """
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    return codebook_usage_from_counts(_code_counts(indices, codebook_size))


class CodebookCounter:
    """Accumulates code counts over batches (e.g. a validation epoch).

    Example::

        counter = CodebookCounter(1024)
        for batch in loader:
            counter.update(model.encode(batch))  # any-shape LongTensor of codes
        usage = counter.compute()
        counter.reset()

    `counts` lives on the device of the last `update` (moved there if needed). Under DDP,
    all-reduce `counter.counts` (sum) before `compute()` to get global usage.
    """

    def __init__(self, codebook_size: int) -> None:
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, got {codebook_size}")
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.long)

    def update(self, indices: Tensor) -> None:
        """Add the occurrences of `indices` (any shape, integers in [0, codebook_size))."""
        batch_counts = _code_counts(indices, self.codebook_size)
        self.counts = self.counts.to(batch_counts.device) + batch_counts

    def compute(self) -> CodebookUsage:
        """Usage of everything seen since construction or the last `reset()`."""
        return codebook_usage_from_counts(self.counts.clone())

    def reset(self) -> None:
        """Forget all counts (keeps the device)."""
        self.counts = torch.zeros_like(self.counts)


# --------------------------------------------------------------------------------------
# Normalized mutual information
# --------------------------------------------------------------------------------------


def normalized_mutual_info(a: Tensor, b: Tensor) -> Tensor:
    """Normalized mutual information between two integer labelings of the same items.

    Arithmetic-mean normalisation, as `sklearn.metrics.normalized_mutual_info_score` with its
    default `average_method='arithmetic'` (Strehl & Ghosh, 2002; Vinh et al., 2010)::

        NMI(a, b) = I(a; b) / ((H(a) + H(b)) / 2)

    with entropies and mutual information (any log base; it cancels) taken from the empirical
    joint distribution, i.e. the contingency table of the two labelings. Label values are
    arbitrary integers (only equality matters), so NMI is invariant to relabeling, symmetric,
    and lies in [0, 1]. Conventions, as in sklearn: 1.0 when both labelings are constant
    (a single label each: they agree perfectly); 0.0 when exactly one is constant (it carries
    no information about the other).

    The contingency table is dense, `(distinct labels of a) x (distinct labels of b)`: meant
    for labelings with few classes (actions, latent actions), not for near-unique ids.

    Args:
        a, b: integer tensors with the same number of elements (flattened), at least one.

    Returns:
        Scalar float32 tensor on `a`'s device.
    """
    if a.is_floating_point() or b.is_floating_point():
        raise ValueError(f"labelings must be integer tensors, got {a.dtype} and {b.dtype}")
    a, b = a.reshape(-1), b.reshape(-1)
    if a.numel() != b.numel() or a.numel() == 0:
        raise ValueError(f"labelings must be non-empty and of equal length, got {a.numel()} and {b.numel()}")
    ua, ia = torch.unique(a, return_inverse=True)
    ub, ib = torch.unique(b.to(a.device), return_inverse=True)
    na, nb = ua.numel(), ub.numel()
    contingency = rearrange(torch.bincount(ia * nb + ib, minlength=na * nb), "(i j) -> i j", i=na, j=nb)
    return nmi_from_contingency(contingency)


def count_ids(ids: Tensor, size: int) -> Tensor:
    """How often each id in [0, size) occurs in `ids` (any shape), `(size,)` long.

    Like `torch.bincount(ids, minlength=size)`, but bincount sizes its output from the data's
    maximum, which costs a device-to-host copy (a stall) on a GPU; this never reads the data
    on the host, so training steps can use it. Ids must lie in [0, size).
    """
    flat = ids.reshape(-1).long()
    return torch.zeros(size, dtype=torch.long, device=ids.device).scatter_add_(0, flat, torch.ones_like(flat))


def contingency_table(a: Tensor, b: Tensor, num_a: int, num_b: int) -> Tensor:
    """Counts `(num_a num_b)` of the label pairs `(a_i, b_i)` of two integer labelings of the
    same items, for accumulating over batches (`nmi_from_contingency`). `a` must lie in
    [0, num_a); `b` is clamped into [0, num_b) so an unexpected label lands in the last column."""
    b = b.to(a.device).long().clamp(0, num_b - 1)
    pairs = a.reshape(-1).long() * num_b + b.reshape(-1)
    return count_ids(pairs, num_a * num_b).view(num_a, num_b)


def nmi_from_contingency(contingency: Tensor) -> Tensor:
    """`normalized_mutual_info` from a contingency table `(labels of a, labels of b)` of counts.

    Empty rows and columns are allowed (labels that never occur), so a fixed-size table can
    be accumulated over batches and summed over processes.
    """
    if contingency.ndim != 2:
        raise ValueError(f"contingency must be 2-D, got shape {tuple(contingency.shape)}")
    p_ab = contingency.double() / contingency.sum().clamp(min=1)
    p_a, p_b = p_ab.sum(dim=1), p_ab.sum(dim=0)
    h_a = -torch.special.xlogy(p_a, p_a).sum()
    h_b = -torch.special.xlogy(p_b, p_b).sum()
    h_ab = -torch.special.xlogy(p_ab, p_ab).sum()
    mi = (h_a + h_b - h_ab).clamp(min=0)  # I(a;b) = H(a) + H(b) - H(a,b); clamp rounding below 0
    denom = (h_a + h_b) / 2
    # Both constant: denom == 0 -> 1. Exactly one constant: mi == 0 < denom -> 0.
    nmi = torch.where(denom > 0, mi / denom.clamp(min=torch.finfo(torch.float64).tiny), torch.ones_like(denom))
    return nmi.clamp(0, 1).float()
