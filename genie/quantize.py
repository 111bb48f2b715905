"""The tokenizer's quantizers: lookup-free quantization (LFQ; Yu et al. 2023, "Language Model
Beats Diffusion", Sec. 3.1), the paper's, and finite scalar quantization (FSQ; Mentzer et al.
2023, at the end of this file), the CPU preset's.

Shape legend: b batch, t frames, h w token grid, n codebooks, d bits per codebook
(`d_codebook`), N tokens (b t h w), K = 2**d codes per codebook.

Each latent dimension is quantized to its sign, so a codebook of K = 2^d codes is the set
{-1, +1}^d and needs no lookup: index = sum_i bit_i * 2^i (eq. 3 of the paper). Gradients
pass straight through. The auxiliary loss (eq. 5) is

    commit * ||z - sg(q)||^2  +  entropy * ( E_z[H(p(c|z))]  -  diversity * H(E_z[p(c|z)]) )

with the soft assignment p(c|z) ∝ exp(-||z - c||^2 / tau). The per-sample entropy is
pushed down (confident codes) and the codebook entropy pushed *up*: the minus sign raises
code usage (with the opposite sign it drives the codebook to collapse).

Memory: p(c|z) over all K codes is N x K (2^18 codes x 8k tokens = 8 GB). It never exists
here. Because the codes factorize over bits, p(c|z) = prod_i p_i(c_i) with p_i(+1) =
sigmoid(4 z_i / tau), so the per-sample entropy is a sum of d binary entropies, and the
codebook distribution E_z[p(c|z)] is computed exactly as one matrix product of the
per-half-codebook tables: (N x 2^(d/2))^T @ (N x 2^(d/2)).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genie.blocks import PointwiseConv3d


class Quantized(NamedTuple):
    codes: torch.Tensor  # (b, n*d, t, h, w) in {-1, +1}, straight-through gradients to the input
    indices: torch.Tensor  # (b, t, h, w) for one codebook, else (b, t, h, w, n); int64
    loss: torch.Tensor  # weighted auxiliary loss (scalar)
    terms: dict[str, torch.Tensor]  # per_sample_entropy, codebook_entropy, commitment (unweighted)


def _binary_entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    return F.binary_cross_entropy_with_logits(logits, p, reduction="none")


def _code_table(logits: torch.Tensor) -> torch.Tensor:
    """`(N, k)` bit logits -> `(N, 2**k)` probabilities of every code, in one matmul of log-probs."""
    k = logits.shape[-1]
    bits = ((torch.arange(2**k, device=logits.device)[:, None] >> torch.arange(k, device=logits.device)) & 1).float()
    log_plus, log_minus = F.logsigmoid(logits), F.logsigmoid(-logits)
    return torch.exp(log_minus.sum(-1, keepdim=True) + (log_plus - log_minus) @ bits.T)


def codebook_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean code distribution over N tokens, exactly, from `(N, d)` bit logits."""
    half = logits.shape[-1] // 2
    if half == 0:
        avg = _code_table(logits).mean(0)
    else:  # avg[a, b] = mean_n P_A[n, a] P_B[n, b]: a matmul instead of an N x 2^d table
        avg = (_code_table(logits[:, :half]).T @ _code_table(logits[:, half:])).flatten() / logits.shape[0]
    return -(avg * torch.log(avg.clamp_min(1e-12))).sum()


class LFQ(nn.Module):
    """Lookup-free quantizer with `n_codebook` codebooks of 2**`d_codebook` codes each.

    Args:
        in_channels: channels of the encoder output; if not `d_codebook * n_codebook`, a
            1x1x1 projection (with `bias`) maps in and another maps back out.
        d_codebook: bits per codebook (codebook size 2**d_codebook).
        n_codebook: number of codebooks.
        bias: bias of the projections.
        frac_sample: fraction of tokens used for the entropy terms (1.0: all).
        commit_weight, entropy_weight, diversity_weight: loss weights (see module docstring).
        temperature: tau of the soft assignment used by the entropy terms.
        norm: scale each token's bits of each codebook to unit RMS before taking signs. The sign
            does not change, but z then lives at the scale of the codes {-1, +1}, so the
            commitment and entropy terms neither shrink z towards 0 nor let it grow without
            bound (vector-quantize-pytorch found LFQ reconstructs poorly without such a norm).
    """

    def __init__(
        self,
        in_channels: int,
        d_codebook: int,
        n_codebook: int = 1,
        *,
        bias: bool = True,
        frac_sample: float = 1.0,
        commit_weight: float = 0.25,
        entropy_weight: float = 0.1,
        diversity_weight: float = 1.0,
        temperature: float = 1.0,
        norm: bool = False,
    ):
        super().__init__()
        if not 0 < frac_sample <= 1:
            raise ValueError(f"lfq_frac_sample must be in (0, 1], got {frac_sample}")
        self.d, self.n = d_codebook, n_codebook
        self.codebook_size = 2**d_codebook
        # a code's bits are the digits of its index (radix 2, bit 0 least significant), as FSQ's levels
        self.levels = [2] * d_codebook if n_codebook == 1 else None
        dim = d_codebook * n_codebook  # bits x codebooks wide, not codebook-size wide
        self.proj_in = PointwiseConv3d(in_channels, dim, bias=bias) if in_channels != dim else nn.Identity()
        self.proj_out = PointwiseConv3d(dim, in_channels, bias=bias) if in_channels != dim else nn.Identity()
        self.frac_sample, self.temperature, self.norm = frac_sample, temperature, norm
        self.commit_weight, self.entropy_weight, self.diversity_weight = commit_weight, entropy_weight, diversity_weight
        self.register_buffer("powers", 2 ** torch.arange(d_codebook), persistent=False)

    def forward(self, z: torch.Tensor) -> Quantized:
        z = self.proj_in(z).float()
        if self.norm:
            per_codebook = rearrange(z, "b (n d) t h w -> b n d t h w", n=self.n)
            normed = F.rms_norm(per_codebook.movedim(2, -1), (self.d,)).movedim(-1, 2)
            z = rearrange(normed, "b n d t h w -> b (n d) t h w")
        q = torch.where(z > 0, 1.0, -1.0)
        codes = z + (q - z).detach()  # straight-through estimator
        bits = rearrange(z > 0, "b (n d) t h w -> b t h w n d", n=self.n).long()
        indices = (bits * self.powers).sum(-1)
        indices = indices[..., 0] if self.n == 1 else indices

        flat = rearrange(z, "b (n d) t h w -> (b t h w) n d", n=self.n)
        if self.training and self.frac_sample < 1:
            keep = torch.randperm(flat.shape[0], device=z.device)[: max(1, int(flat.shape[0] * self.frac_sample))]
            flat = flat[keep]
        logits = 4 * flat / self.temperature  # p(c_i = +1 | z_i) = sigmoid(4 z_i / tau)
        per_sample = _binary_entropy(logits).sum(-1).mean()  # sum over bits, mean over tokens and codebooks
        diversity = torch.stack([codebook_entropy(logits[:, i]) for i in range(self.n)]).mean()
        commitment = F.mse_loss(z, q)
        loss = self.commit_weight * commitment + self.entropy_weight * (per_sample - self.diversity_weight * diversity)
        terms = {"per_sample_entropy": per_sample, "codebook_entropy": diversity, "commitment": commitment}
        return Quantized(codes, indices, loss, terms)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """`(b t h w)` or `(b t h w n)` int indices -> `(b, n*d, t, h, w)` codes in {-1, +1}."""
        if self.n == 1 and indices.dim() == 4:
            indices = indices[..., None]
        bits = (indices[..., None] // self.powers) % 2  # (b t h w n d)
        return rearrange(bits.float() * 2 - 1, "b t h w n d -> b (n d) t h w")


class FSQ(nn.Module):
    """Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
    Simple"): project to `len(levels)` dimensions, bound dimension i to `levels[i]` values with a
    tanh and round it (straight-through). The codebook is the grid of all combinations,
    prod(levels) codes, used without any auxiliary loss and without collapse (Sec. 3 of the
    paper; ~1000 codes is levels [8, 5, 5, 5], Table 1).

    Codes are the rounded values scaled to [-1, 1]; the index of a code reads its digits in the
    mixed radix `levels` (dimension 0 least significant).

    Args:
        in_channels: channels of the encoder output; a 1x1x1 projection maps them to
            `len(levels)` (and another back out) when they differ.
        levels: values per dimension (each >= 2).
        bias: bias of the projections.
    """

    def __init__(self, in_channels: int, levels: list[int] | tuple[int, ...], *, bias: bool = True):
        super().__init__()
        levels = [int(n) for n in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"fsq_levels must be a non-empty list of integers >= 2, got {levels}")
        self.levels, dim = levels, len(levels)
        self.codebook_size = int(torch.tensor(levels).prod())
        self.proj_in = PointwiseConv3d(in_channels, dim, bias=bias) if in_channels != dim else nn.Identity()
        self.proj_out = PointwiseConv3d(dim, in_channels, bias=bias) if in_channels != dim else nn.Identity()
        level = torch.tensor(levels, dtype=torch.float32)
        # an even number of levels has no centre value: shift by half a step so that rounding the
        # bounded value gives exactly `levels[i]` integers in [-L/2, L/2 - 1] (the paper's code)
        offset = (1 - level % 2) * 0.5
        half_level = (level - 1) * (1 + 1e-3) / 2
        self.register_buffer("half_level", half_level, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half_level), persistent=False)
        self.register_buffer("half_width", torch.floor(level / 2), persistent=False)
        radix = torch.cumprod(torch.tensor([1] + levels[:-1]), 0)
        self.register_buffer("radix", radix, persistent=False)
        self.register_buffer("level", level.long(), persistent=False)

    def forward(self, z: torch.Tensor) -> Quantized:
        z = rearrange(self.proj_in(z).float(), "b d t h w -> b t h w d")
        bounded = torch.tanh(z + self.shift) * self.half_level - self.offset
        rounded = bounded + (bounded.round() - bounded).detach()  # straight-through
        digits = rounded.detach().long() + self.half_width.long()  # (b t h w d) in [0, levels)
        indices = (digits * self.radix).sum(-1)
        codes = rearrange(rounded / self.half_width, "b t h w d -> b d t h w")
        return Quantized(codes, indices, z.new_zeros(()), {})

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """`(b t h w)` int indices -> `(b d t h w)` codes in [-1, 1]."""
        digits = (indices[..., None] // self.radix) % self.level
        return rearrange((digits - self.half_width) / self.half_width, "b t h w d -> b d t h w")
