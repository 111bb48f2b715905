"""genie.py (stage 2) driven in-process, and stage-1 tokenizer checkpoints to feed it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import yaml

from genie.checkpoints import store_network
from genie.tokenizer import VideoTokenizer

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--data.num_frames", "4", "--data.batch_size", "2", "--data.num_workers", "0", "--data.eval_clips", "2",
         "--trainer.enable_progress_bar", "false", "--model.sample_steps", "3"]  # fmt: skip


def load_script(name: str, module_name: str):
    """A top-level script of the repository as a module (genie.py cannot be imported as `genie`:
    that name is the package)."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


genie_cli = load_script("genie.py", "genie_script")


def tokenizer_checkpoint(path: Path, preset: str, **overrides) -> Path:
    """A tokenizer checkpoint in the format `tokenizer.py fit` writes (random weights)."""
    args = yaml.safe_load((REPO / "config" / preset).read_text())["model"]["tokenizer"]["init_args"]
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(**{**args, **overrides})
    ckpt = {"state_dict": {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}}
    store_network(ckpt, "tokenizer", tokenizer.config)
    torch.save(ckpt, path)
    return path


def genie_args(sub: str, config: str, tiny_root: Path, tokenizer: Path, tmp_path: Path, *extra: str) -> list[str]:
    """Command-line arguments of `genie.py <sub>` with a preset on the tiny dataset."""
    paths = ["--model.tokenizer_ckpt_path", str(tokenizer), "--trainer.default_root_dir", str(tmp_path)]
    return [sub, "-c", str(REPO / "config" / config), "--data.root", str(tiny_root), *SMALL, *paths, *extra]
