"""The command line of both training stages (`tokenizer.py`, `genie.py`): LightningCLI with
checkpoints under the trainer's root directory.

A `ModelCheckpoint` without `dirpath` writes to `<trainer.default_root_dir>/checkpoints/`,
one fixed folder per run directory: `--ckpt_path last` finds `last.ckpt` there, and the
presets turn off Lightning's version counter, so a second run in the same directory replaces
`last.ckpt` instead of writing `last-v1.ckpt` beside it (a later stage that reads
`last.ckpt` then always gets the newest run's weights).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from genie.checkpoints import CheckpointError, MissingCheckpointError, read_checkpoint


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


# What a user's input causes before training starts (a missing or mismatched checkpoint, no
# data, clips longer than any life, a setting out of range): one line, not a traceback.
USER_ERRORS = (CheckpointError, FileNotFoundError, ValueError, MisconfigurationException)


def run_script(main: Callable[[], object], script: str) -> None:
    """Run a training script's `main`, turning `USER_ERRORS` into one `script: error:` line."""
    try:
        main()
    except USER_ERRORS as e:
        sys.exit(f"{script}: error: {e}")


def check_training_checkpoint(path: str | Path, networks: tuple[str, ...]) -> None:
    """Refuse a `--ckpt_path` that is not a training checkpoint holding `networks` (this stage's)."""
    ckpt = read_checkpoint(path)
    if "pytorch-lightning_version" not in ckpt:
        raise CheckpointError(f"{path} holds no training state (a bundled checkpoint plays and evaluates; "
                              f"it cannot resume or be tested here): pass a checkpoint written by fit")  # fmt: skip
    have = sorted(ckpt.get("networks", {}))
    if not set(networks) <= set(have):
        raise CheckpointError(f"{path} holds the {'/'.join(have) or 'unnamed'} network(s) of the other stage; "
                              f"this stage's checkpoints hold {'/'.join(networks)}")  # fmt: skip


class TrainingCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, save_config_kwargs={"overwrite": True}, **kwargs)

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        self.parser_class = OneLineErrorParser
        return super().init_parser(**kwargs)

    # The data is checked before the trainer starts, so a run with no data or impossible clips
    # stops with its reason and leaves no empty log folder behind.
    def before_fit(self) -> None:
        self.datamodule.setup("fit")

    def before_validate(self) -> None:
        self.datamodule.setup("validate")

    def before_test(self) -> None:
        self.datamodule.setup("test")

    def _parse_ckpt_path(self) -> None:
        # Lightning reads --ckpt_path's hyper-parameters here; first make sure the file is a
        # training checkpoint of this stage, so a wrong file is one line saying which it is.
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path and Path(path).is_file():
            check_training_checkpoint(path, getattr(self.model_class, "NETWORKS", ()))
        elif path and path not in ("last", "best", "hpc") and not str(path).startswith("registry"):
            raise MissingCheckpointError(f"no checkpoint at {path} (--ckpt_path)")
        super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            if callback.dirpath is None:
                callback.dirpath = str(checkpoint_dir(trainer.default_root_dir).resolve())
        return trainer
