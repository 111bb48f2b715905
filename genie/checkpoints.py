"""Rebuilding networks from Lightning checkpoints by path alone.

A training module stores each network's constructor arguments under
`checkpoint["networks"][name]` (see `store_network`), next to its weights under the
`name.` prefix of the state dict, so later stages and play.py need nothing but the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

N = TypeVar("N", bound=nn.Module)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not the kind the caller needs."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint path."""


def store_network(checkpoint: dict, name: str, config: dict[str, Any]) -> None:
    checkpoint.setdefault("networks", {})[name] = config


def load_network(cls: type[N], path: str | Path, name: str, map_location="cpu", **overrides: Any) -> N:
    """Build `cls(**stored config, **overrides)` and load its weights from a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(f"no checkpoint at {path}")
    try:  # our own files: their hyper-parameters hold tuples and dicts, not only tensors
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    config = ckpt.get("networks", {}).get(name) if isinstance(ckpt, dict) else None
    if config is None:
        raise CheckpointError(f"{path} holds no {name!r} network (was it written by the matching training script?)")
    net = cls(**{**config, **overrides})
    prefix = name + "."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the {name!r} weights do not fit its stored configuration ({e})") from e
    return net
