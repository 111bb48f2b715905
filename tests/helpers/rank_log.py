"""A Lightning callback for tests/test_distributed.py: what each DDP process trained and
validated on, and the weights it ended with.

Given on the command line, so every DDP process builds its own:
    PYTHONPATH=<repo>/tests/helpers python genie.py fit ... \
        --trainer.callbacks+=rank_log.RankLog --trainer.callbacks.out_dir <dir>
When fit ends, each process writes `<dir>/rank<global rank>.json`: a fingerprint of every
training and validation clip it saw, one of each network's weights, and the names of
the metrics it holds (what a checkpoint callback could monitor).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import torch
from torch import nn

from genie.data import Clip, RawClip, to_frames


def clip_fingerprints(batch: Clip | RawClip) -> list[str]:
    """One hash per clip of its uint8 frames and actions (the bytes the loader read from disk)."""
    frames = to_frames(batch.video) if isinstance(batch, Clip) else batch.frames  # (b t h w c) uint8
    frames, actions = frames.cpu().numpy(), batch.actions.cpu().numpy()
    return [hashlib.sha1(f.tobytes() + a.tobytes()).hexdigest() for f, a in zip(frames, actions)]


def weights_fingerprint(module: nn.Module) -> str:
    """A hash of every parameter and buffer, bit for bit."""
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class RankLog(L.Callback):
    """Args:
    out_dir: folder of the per-rank JSON files (created if missing).
    """

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.clips: dict[str, list[str]] = {"train": [], "val": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.clips["train"] += clip_fingerprints(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.clips["val"] += clip_fingerprints(batch)

    def on_fit_end(self, trainer, pl_module) -> None:
        weights = {name: weights_fingerprint(child) for name, child in pl_module.named_children()}
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, "weights": weights,
                  "metrics": sorted(trainer.callback_metrics), **self.clips}  # fmt: skip
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
