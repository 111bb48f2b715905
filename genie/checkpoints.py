"""Rebuilding networks from Lightning checkpoints by path alone.

A training module stores each network's constructor arguments under
`checkpoint["networks"][name]` (see `store_network`), next to its weights under the
`name.` prefix of the state dict, so later stages and play.py need nothing but the path.
"""

from __future__ import annotations

import pickle
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


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint file's contents, loaded as data only.

    `torch.load(weights_only=True)` unpickles tensors and plain containers and nothing else, so a
    crafted file cannot run code on load (a full unpickle would run whatever the file names).
    Everything the training scripts write (weights, optimizer state, hyper-parameters, network
    configurations) is plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # not a pickle at all ("Unsupported operand"): just not a checkpoint
            raise CheckpointError(f"{path} is not a readable checkpoint (not a torch.save file)") from e
        named = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), "")[:200]
        raise CheckpointError(f"{path} holds more than tensors and plain data, and checkpoints are only loaded as "
                              f"data: refused ({named})") from e  # fmt: skip
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint of this project (it holds a {type(ckpt).__name__})")
    return ckpt


def load_network(cls: type[N], path: str | Path, name: str, map_location="cpu", *, ckpt: dict | None = None,
                 **overrides: Any) -> N:  # fmt: skip
    """Build `cls(**stored config, **overrides)` and load its weights from a checkpoint file
    (`ckpt`: its contents, when the caller has read them already with `read_checkpoint`)."""
    ckpt = read_checkpoint(path, map_location) if ckpt is None else ckpt
    config = ckpt.get("networks", {}).get(name)
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


# --- what a Genie checkpoint needs of its tokenizer (training and play check the same) ---
def require_frame_tokens(time_down: int, path: str | Path) -> None:
    """Genie's dynamics model predicts one token grid per frame: a tokenizer at `path` that
    down-samples time by `time_down` > 1 cannot serve it."""
    if time_down != 1:
        raise CheckpointError(
            f"{path}: this tokenizer down-samples time by {time_down}; Genie needs one token grid per frame "
            "(train it with no time down-sampling, as config/tokenize.yaml)"
        )


def require_same_vocabulary(trained_with: int | None, codes: int, genie_path: str | Path,
                            tokenizer_path: str | Path, recorded_path: str | None = None) -> None:  # fmt: skip
    """A Genie checkpoint trained on a tokenizer of `trained_with` codes (None: not recorded)
    refuses the tokenizer at `tokenizer_path`, of `codes` codes, when they differ."""
    if trained_with is not None and trained_with != codes:
        raise CheckpointError(
            f"{genie_path} was trained on a tokenizer with {trained_with} codes, but {tokenizer_path} has "
            f"{codes}: pass the tokenizer it was trained with ({recorded_path or 'path not recorded'})"
        )
