"""The command line of both training stages (`tokenizer.py`, `genie.py`): LightningCLI with
checkpoints under the trainer's root directory.

A `ModelCheckpoint` without `dirpath` writes to `<trainer.default_root_dir>/checkpoints/`,
one fixed folder per run directory: `--ckpt_path last` finds `last.ckpt` there, and the
presets turn off Lightning's version counter, so a second run in the same directory replaces
`last.ckpt` instead of writing `last-v1.ckpt` beside it (a later stage that reads
`last.ckpt` then always gets the newest run's weights).
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI


def checkpoint_dir(root_dir: str | Path) -> Path:
    """Where a run with this `trainer.default_root_dir` keeps its checkpoints."""
    return Path(root_dir) / "checkpoints"


class TrainingCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, save_config_kwargs={"overwrite": True}, **kwargs)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            if callback.dirpath is None:
                callback.dirpath = str(checkpoint_dir(trainer.default_root_dir).resolve())
        return trainer
