"""Blueprints: a network described as a list of `(block_name, kwargs)` pairs.

    enc_desc = (
        ('causal', {'in_channels': 3, 'out_channels': 64, 'kernel_size': 3}),
        ('residual', {'in_channels': 64, 'downsample': (1, 2), 'use_blur': True}),
        ('residual', {'n_rep': 2, 'in_channels': 64}),     # n_rep: the same block twice
        ('proj_out', {'in_channels': 64, 'out_channels': 18}),
    )

A channel count may be a name the network fills in (the tokenizer's `code`: the quantizer's code
width), so that a width is written once, where it is decided, and never retyped:

    ('proj_out', {'in_channels': 64, 'out_channels': 'code'})

The same description works from Python and from YAML (where pairs are lists). Every block
maps a video `(b c t h w)` to a video. Building checks that channels chain and names a bad
entry; it never mutates the description (popping `n_rep` out of a preset dict
silently builds a smaller model the second time the preset is used).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import nn

from genie.attention import SpaceTimeBlock
from genie.blocks import (
    CausalConvBlock,
    Patchify,
    ProjOut,
    ResidualBlock,
    SpaceTimeDownsample,
    SpaceTimeUpsample,
)

BLOCKS: dict[str, type[nn.Module]] = {
    "causal": CausalConvBlock,
    "residual": ResidualBlock,
    "spacetime_downsample": SpaceTimeDownsample,
    "spacetime_upsample": SpaceTimeUpsample,
    "proj_out": ProjOut,
    "patchify": Patchify,
    "space-time_attn": SpaceTimeBlock,
}

Blueprint = Sequence[tuple[str, dict]]


class BlueprintError(ValueError):
    """A description that cannot be built; the message names the offending entry."""


class Stack(nn.Module):
    """The network a blueprint describes, with its overall channel and scale bookkeeping."""

    def __init__(self, desc: Blueprint, name: str = "blueprint", widths: dict[str, int] | None = None):
        """`widths`: the named channel counts the description may use in place of numbers."""
        super().__init__()
        layers: list[nn.Module] = []
        self.in_channels: int | None = None
        self.time_factor = self.space_factor = Fraction(1)  # output size / input size
        for i, entry in enumerate(desc):
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], dict)):
                raise BlueprintError(f"{name}[{i}]: expected a (block_name, kwargs) pair, got {entry!r}")
            block, kwargs = entry
            if block not in BLOCKS:
                raise BlueprintError(f"{name}[{i}]: unknown block {block!r}; known blocks: {', '.join(BLOCKS)}")
            kwargs = dict(kwargs)  # a copy: the caller's description stays as it was
            for key in ("in_channels", "out_channels"):
                if isinstance(kwargs.get(key), str):
                    if kwargs[key] not in (widths or {}):
                        known = ", ".join(widths or {}) or "none here"
                        raise BlueprintError(f"{name}[{i}] ({block!r}): {key}={kwargs[key]!r} is not a number or a "
                                             f"named width (named widths: {known})")  # fmt: skip
                    kwargs[key] = widths[kwargs[key]]
            n_rep = kwargs.pop("n_rep", 1)
            for _ in range(n_rep):
                try:
                    layer = BLOCKS[block](**kwargs)
                except TypeError as e:
                    raise BlueprintError(f"{name}[{i}] ({block!r}): {e}") from e
                if layers and layer.in_channels != layers[-1].out_channels:
                    raise BlueprintError(
                        f"{name}[{i}] ({block!r}): in_channels={layer.in_channels} but the previous block "
                        f"outputs {layers[-1].out_channels} channels"
                    )
                self.time_factor *= Fraction(getattr(layer, "time_factor", 1)).limit_denominator()
                self.space_factor *= Fraction(getattr(layer, "space_factor", 1)).limit_denominator()
                layers.append(layer)
        if not layers:
            raise BlueprintError(f"{name}: empty description")
        self.layers = nn.ModuleList(layers)
        self.in_channels, self.out_channels = layers[0].in_channels, layers[-1].out_channels

    @property
    def has_ext(self) -> bool:
        """Whether some block is conditioned on an external vector per frame (`ext`)."""
        return any(getattr(layer, "has_ext", False) for layer in self.layers)

    def forward(self, x: torch.Tensor, ext: torch.Tensor | None = None) -> torch.Tensor:
        """Video `(b c t h w)` -> video; `ext (b t e)` goes to the conditioned blocks."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got a tensor of shape {tuple(x.shape)}")
        for layer in self.layers:
            x = layer(x, ext) if getattr(layer, "has_ext", False) else layer(x)
        return x
