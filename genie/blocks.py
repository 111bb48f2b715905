"""Convolutional building blocks of the video tokenizer (MagViT-2, Yu et al. 2023).

Shape legend: b batch, c channels, t frames, h w height/width. Every block maps a video
`(b c t h w)` to a video, so blueprints can chain any of them (see `genie.blueprint`).

Causality (Genie needs frame t's tokens to depend on frames <= t only, so one prompt
image tokenizes on its own): convolutions pad time on the past side only, and norms are
per frame (a GroupNorm over the time axis would leak the future). Temporal
down-sampling pools groups of frames, so a token depends on the frames of its own group
and earlier ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def _triple(x: int | tuple | list) -> tuple[int, int, int]:
    return (x, x, x) if isinstance(x, int) else tuple(x)  # type: ignore[return-value]


def _factors(downsample: int | tuple | list | None) -> tuple[int, int]:
    """`downsample` as blueprints write it: `2` (time=space=2) or `(time, space)`."""
    if downsample is None:
        return 1, 1
    if isinstance(downsample, int):
        return downsample, downsample
    t, s = downsample
    return int(t), int(s)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm computed on each frame separately: statistics never mix time steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", t=t)


class TokenLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position on its own: unlike a frame's GroupNorm, a
    position's output never depends on the rest of the frame. An encoder built from it and
    1x1 kernels gives each token a function of its own patch only, so a token changes only
    where its patch's pixels change (a frame-wide norm lets a change anywhere in the frame move
    every token's features, and with them codes that sit near a rounding boundary)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(super().forward(rearrange(x, "b c t h w -> b t h w c")), "b t h w c -> b c t h w")


def make_norm(norm: str, num_groups: int, channels: int) -> nn.Module:
    """`norm="frame"`: GroupNorm per frame (`num_groups` groups); `norm="token"`: LayerNorm per position."""
    if norm == "frame":
        return FrameGroupNorm(num_groups, channels)
    if norm == "token":
        return TokenLayerNorm(channels)
    raise ValueError(f"norm must be 'frame' or 'token', got {norm!r}")


def frame_conv(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A Conv3d whose kernel has time extent 1 and time stride 1, run as a 2D conv over (b t)
    frames (the same sums). Measured on a 2-core CPU, the tiny preset trains at the same speed
    either way (bench/bench_tokenizer.py prints the ratio); the 2D form keeps per-frame layers
    independent of the clip length."""
    t = x.shape[2]
    pad = conv.padding[1:] if isinstance(conv.padding, tuple) else conv.padding
    y = F.conv2d(rearrange(x, "b c t h w -> (b t) c h w"), conv.weight[:, :, 0], conv.bias, conv.stride[1:], pad)
    return rearrange(y, "(b t) c h w -> b c t h w", t=t)


class PointwiseConv3d(nn.Conv3d):
    """1x1x1 convolution (skips, quantizer projections), computed per frame as a 2D conv."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frame_conv(self, x)


class CausalConv3d(nn.Module):
    """3D convolution padded on the past side in time (replicating the first frame) and
    symmetrically in space; `causal=False` pads time symmetrically instead."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple = 3,
        stride: int | tuple = 1,
        *,
        causal: bool = True,
        bias: bool = True,
    ):
        super().__init__()
        kt, kh, kw = _triple(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.time_pad = (kt - 1, 0) if causal else ((kt - 1) // 2, kt // 2)
        self.conv = nn.Conv3d(
            in_channels, out_channels, (kt, kh, kw), _triple(stride), (0, kh // 2, kw // 2), bias=bias
        )

    _stream: dict | None = None  # set by `FrameStream` while it runs this conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = self._stream
        if stream is not None and self in stream:  # later chunk of a stream: its real past frames
            x = torch.cat([stream[self], x], dim=2)
        elif any(self.time_pad):  # replicate the first (and last) frame
            # a cat rather than F.pad(mode="replicate"): torch.compile (inductor 2.13, CPU) fails on
            # that pad behind a fused norm ("vr must not be None")
            before, after = self.time_pad
            first, last = x[:, :, :1], x[:, :, -1:]
            x = torch.cat([first.expand(-1, -1, before, -1, -1), x, last.expand(-1, -1, after, -1, -1)], dim=2)
        if stream is not None and self.time_pad[0]:
            stream[self] = x[:, :, -self.time_pad[0] :]
        conv = self.conv
        if conv.kernel_size[0] == 1 and conv.stride[0] == 1:  # a per-frame kernel
            return frame_conv(conv, x)
        if x.shape[2] == conv.kernel_size[0] and conv.stride[0] == 1:  # one output frame (play, prompts):
            # the same sum as a 2D conv over (channel, frame) pairs, which has fast CPU kernels
            # where 3D convolution falls back to a slow path (most of a decoded frame's time).
            weight = rearrange(conv.weight, "o c t kh kw -> o (c t) kh kw")
            y = F.conv2d(rearrange(x, "b c t h w -> b (c t) h w"), weight, conv.bias, conv.stride[1:], conv.padding[1:])
            return y[:, :, None]
        return conv(x)


class FrameStream:
    """Run a causal stack on a video a few frames at a time, with the same output as one call
    on the whole video (play decodes each generated frame once instead of a growing window).

    Each `CausalConv3d` keeps the last `kt - 1` frames of its input between calls in place of
    the replicate padding; every other block of the tokenizer is per frame (per-frame norms,
    spatial re-sampling), so nothing else needs a past. Streams of different batches or
    videos need different `FrameStream`s.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self.convs = [m for m in module.modules() if isinstance(m, CausalConv3d)]
        for conv in self.convs:
            if conv.time_pad[1] or conv.conv.stride[0] != 1:
                raise ValueError("streaming needs causal convolutions with time stride 1 (no time re-sampling)")
        self.past: dict[CausalConv3d, torch.Tensor] = {}

    @property
    def per_frame(self) -> bool:
        """No convolution looks back in time: each frame's output depends on that frame alone."""
        return not any(conv.time_pad[0] for conv in self.convs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The next frames `(b c t h w)` -> the module's output for them."""
        for conv in self.convs:
            conv._stream = self.past
        try:
            return self.module(x)
        finally:
            for conv in self.convs:
                conv._stream = None


class BlurPool(nn.Module):
    """Anti-aliased spatial down-sampling (Zhang 2019): a binomial [1, 2, 1] blur, then stride.
    Depthwise, one kernel per channel: a dense blur would make every output channel identical."""

    def __init__(self, channels: int, factor: int = 2):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(k, k) / 16
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.factor, self.channels = factor, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        y = F.conv2d(
            F.pad(frames, (1, 1, 1, 1), mode="replicate"), self.kernel, stride=self.factor, groups=self.channels
        )
        return rearrange(y, "(b t) c h w -> b c t h w", t=t)


class Downsample(nn.Module):
    """Down-sample space by `space` (blur-pool or average) and time by `time` (average of
    each group of `time` consecutive frames: causal at the level of groups)."""

    def __init__(self, channels: int, time: int = 1, space: int = 1, use_blur: bool = False):
        super().__init__()
        self.time, self.space = time, space
        self.blur = BlurPool(channels, space) if use_blur and space > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time > 1:
            x = F.avg_pool3d(x, (self.time, 1, 1))
        if self.space > 1:
            x = self.blur(x) if self.blur is not None else F.avg_pool3d(x, (1, self.space, self.space))
        return x


class ResidualBlock(nn.Module):
    """MagViT-2 residual block: optional down-sampling, then (norm, SiLU, conv) x 2 plus a skip.

    Down-sampling comes first so the convolutions run at the lower resolution (4x cheaper
    for a 2x spatial step than convolving first; measured 2.9 s -> ~0.7 s for a 64->128
    block on 4 x 16 x 64 x 64 on the 2-core CPU).

    Args:
        in_channels: input channels.
        out_channels: output channels (default: `in_channels`); a 1x1x1 conv adapts the skip.
        kernel_size: conv kernel (int or (t, h, w)).
        downsample: None, `f` (time = space = f), or `(time, space)` factors.
        use_causal: pad time on the past side only.
        use_blur: blur-pool for spatial down-sampling (else average pooling).
        num_groups: GroupNorm groups (per frame).
        norm: "frame" (GroupNorm per frame) or "token" (LayerNorm per position; see `TokenLayerNorm`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int | tuple = 3,
        downsample: int | tuple | None = None,
        use_causal: bool = True,
        use_blur: bool = False,
        num_groups: int = 8,
        norm: str = "frame",
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.time_factor, self.space_factor = (1 / f for f in _factors(downsample))
        self.norm1 = make_norm(norm, num_groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel_size, causal=use_causal)
        self.norm2 = make_norm(norm, num_groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel_size, causal=use_causal)
        self.skip = PointwiseConv3d(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        t, s = _factors(downsample)
        self.down = Downsample(in_channels, t, s, use_blur) if (t, s) != (1, 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SpaceTimeDownsample(nn.Module):
    """Learned down-sampling: a causal conv strided by (time_factor, space_factor, space_factor).
    Output frame j sees input frames <= j * time_factor."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int | tuple = 3,
        time_factor: int = 1,
        space_factor: int = 2,
        use_causal: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels or in_channels
        self.time_factor, self.space_factor = 1 / time_factor, 1 / space_factor
        stride = (time_factor, space_factor, space_factor)
        self.conv = CausalConv3d(in_channels, self.out_channels, kernel_size, stride, causal=use_causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Patchify(nn.Module):
    """Space-to-depth, then a per-frame linear map: each `patch_size` x `patch_size` pixel patch
    becomes one position of `out_channels` features (a ViT patch embedding; MagViT-2 reaches the
    token grid with strided residual stages instead). Starting an encoder with it runs every
    later block at the token resolution, `patch_size**2` times fewer positions than pixels."""

    def __init__(self, in_channels: int, out_channels: int, patch_size: int = 4):
        super().__init__()
        self.in_channels, self.out_channels, self.p = in_channels, out_channels, patch_size
        self.time_factor, self.space_factor = 1.0, 1 / patch_size
        self.proj = CausalConv3d(in_channels * patch_size**2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = rearrange(x, "b c t (h ph) (w pw) -> b (c ph pw) t h w", ph=self.p, pw=self.p)
        return self.proj(patches)


class SpaceTimeUpsample(nn.Module):
    """Depth-to-space-time up-sampling (MagViT-2): a causal conv makes `tf * sf * sf` times
    the channels, which are then laid out over time and space ("pixel shuffle" in 3D)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int | tuple = 3,
        time_factor: int = 1,
        space_factor: int = 2,
        use_causal: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels or in_channels
        self.tf, self.sf = time_factor, space_factor
        self.time_factor, self.space_factor = float(time_factor), float(space_factor)
        expand = self.out_channels * time_factor * space_factor**2
        self.conv = CausalConv3d(in_channels, expand, kernel_size, causal=use_causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return rearrange(y, "b (c tf sh sw) t h w -> b c (t tf) (h sh) (w sw)", tf=self.tf, sh=self.sf, sw=self.sf)


class ProjOut(nn.Module):
    """Output projection: norm (per frame, or per position with `norm="token"`), SiLU, then a
    (causal) conv to `out_channels` (e.g. the quantizer's dimension at the end of an encoder,
    RGB at the end of a decoder)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_groups: int = 8,
        kernel_size: int | tuple = 3,
        use_causal: bool = True,
        norm: str = "frame",
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm = make_norm(norm, num_groups, in_channels)
        self.conv = CausalConv3d(in_channels, out_channels, kernel_size, causal=use_causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(x)))


class CausalConvBlock(CausalConv3d):
    """Blueprint entry `'causal'`: a plain causal 3D convolution."""

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int | tuple = 3):
        super().__init__(in_channels, out_channels or in_channels, kernel_size)
