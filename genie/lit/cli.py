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

import re
import sys

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI


def checkpoint_dir(root_dir: str | Path) -> Path:
    """Where a run with this `trainer.default_root_dir` keeps its checkpoints."""
    return Path(root_dir) / "checkpoints"


class OneLineErrorParser(LightningArgumentParser):
    """A config or command-line mistake (an unknown or mistyped key, malformed YAML, a missing
    config file) is one line naming it, not the whole usage text before it; `--help` has that."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)
        script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else self.prog.split()[0]
        one_line = re.sub(r"\s+", " ", message).strip()
        sys.stderr.write(f"{script}: error: {one_line}\n")
        self.exit(2)


class TrainingCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, save_config_kwargs={"overwrite": True}, **kwargs)

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        self.parser_class = OneLineErrorParser
        return super().init_parser(**kwargs)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            if callback.dirpath is None:
                callback.dirpath = str(checkpoint_dir(trainer.default_root_dir).resolve())
        return trainer
