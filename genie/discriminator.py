"""Frame discriminator for the tokenizer's optional GAN loss (MagViT-2 trains with one).

Shape legend: n frames in a batch (videos' frames folded together), c channels, h w size.
A 2D residual network over single frames, with optional spatial self-attention and
blur-pooled down-sampling, ending in one logit per frame. Trained with the hinge loss
(`hinge_d_loss` / `hinge_g_loss`) by its own optimizer (see `genie.lit.tokenizer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genie.attention import Attention
from genie.blocks import BlurPool

_ACTS = {"leaky": lambda: nn.LeakyReLU(0.2), "silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}


class _Res2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, num_groups: int, act: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(num_groups, cin), _ACTS[act](), nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(num_groups, cout), _ACTS[act](), nn.Conv2d(cout, cout, kernel_size, padding=kernel_size // 2),
        )  # fmt: skip
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class _SpatialAttn(nn.Module):
    def __init__(self, dim: int, num_heads: int, dim_head: int):
        super().__init__()
        self.norm, self.attn = nn.LayerNorm(dim), Attention(dim, num_heads, dim_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(x, "n c h w -> n (h w) c")
        tokens = tokens + self.attn(self.norm(tokens))
        return rearrange(tokens, "n (h w) c -> n c h w", h=h, w=w)


class _Down2d(nn.Module):
    def __init__(self, channels: int, factor: int, use_blur: bool):
        super().__init__()
        self.blur = BlurPool(channels, factor) if use_blur else None
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.blur is None:
            return F.avg_pool2d(x, self.factor)
        return self.blur(x[:, :, None])[:, :, 0]  # BlurPool works on videos: a 1-frame video


class FrameDiscriminator(nn.Module):
    """Args are the tokenizer's `disc_kwargs`.

    Args:
        inp_size: frame (h, w).
        model_dim: channels after the input conv.
        dim_mults: channel multiplier of each stage.
        down_step: spatial down-sampling after each stage (None: none).
        inp_channels: input channels (3 for RGB).
        kernel_size: conv kernel.
        num_groups: GroupNorm groups.
        act_fn: 'leaky', 'silu', 'relu' or 'gelu'.
        use_blur: blur-pool down-sampling (else average pooling).
        use_attn: spatial self-attention after each stage.
        num_heads, dim_head: attention heads and their width.
    """

    def __init__(
        self,
        inp_size: tuple[int, int] = (64, 64),
        model_dim: int = 64,
        dim_mults: tuple[int, ...] = (1, 2, 4),
        down_step: tuple[int | None, ...] = (None, 2, 2),
        inp_channels: int = 3,
        kernel_size: int = 3,
        num_groups: int = 8,
        act_fn: str = "leaky",
        use_blur: bool = True,
        use_attn: bool = False,
        num_heads: int = 4,
        dim_head: int = 32,
    ):
        super().__init__()
        if len(dim_mults) != len(down_step):
            raise ValueError(f"disc_kwargs: dim_mults {dim_mults} and down_step {down_step} differ in length")
        if act_fn not in _ACTS:
            raise ValueError(f"disc_kwargs: unknown act_fn {act_fn!r}; choose from {', '.join(_ACTS)}")
        self.inp_size = tuple(inp_size)
        layers: list[nn.Module] = [nn.Conv2d(inp_channels, model_dim, kernel_size, padding=kernel_size // 2)]
        dim, (h, w) = model_dim, self.inp_size
        for mult, down in zip(dim_mults, down_step):
            layers.append(_Res2d(dim, model_dim * mult, kernel_size, num_groups, act_fn))
            dim = model_dim * mult
            if use_attn:
                layers.append(_SpatialAttn(dim, num_heads, dim_head))
            if down:
                layers.append(_Down2d(dim, down, use_blur))
                h, w = h // down, w // down
        layers += [
            nn.GroupNorm(num_groups, dim),
            _ACTS[act_fn](),
            nn.Conv2d(dim, 1, kernel_size, padding=kernel_size // 2),
        ]
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(h * w, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """`(n c h w)` frames in [-1, 1] -> `(n,)` logits (real > 0)."""
        if tuple(frames.shape[-2:]) != self.inp_size:
            raise ValueError(f"discriminator built for {self.inp_size} frames, got {tuple(frames.shape[-2:])}")
        return self.head(rearrange(self.net(frames), "n 1 h w -> n (h w)"))[:, 0]


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
