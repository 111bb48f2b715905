"""Checkpoints are loaded as data only: a crafted file is refused before it can run code, with one
clear error, through every public loader (networks, the playable world, stage 2's tokenizer)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genie.checkpoints import CheckpointError, load_network, read_checkpoint, store_network
from genie.dynamics import DynamicsModel
from genie.tokenizer import VideoTokenizer
from genie.world import load_world

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs `os.system`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "crafted.ckpt"
    good = torch.load(REPO / "res" / "genie.ckpt", weights_only=True)  # a real checkpoint, plus a payload
    torch.save({**good, "extra": Payload(marker)}, path)
    return path, marker


def test_a_checkpoint_with_code_in_it_is_refused_and_the_code_never_runs(tmp_path):
    path, marker = crafted(tmp_path)
    with pytest.raises(CheckpointError, match="only loaded as data"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="only loaded as data"):
        DynamicsModel.from_checkpoint(path)
    with pytest.raises(CheckpointError, match="only loaded as data"):
        load_world(str(path), str(REPO / "res" / "tokenizer.ckpt"))
    assert not marker.exists()


def test_play_refuses_a_crafted_checkpoint_with_one_line(tmp_path):
    path, marker = crafted(tmp_path)
    run = subprocess.run([sys.executable, "play.py", "--checkpoint", str(path), "--tokenizer_checkpoint",
                          str(REPO / "res" / "tokenizer.ckpt"), "--output", str(tmp_path / "out.gif")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode != 0 and not marker.exists() and not (tmp_path / "out.gif").exists()
    assert "Traceback" not in run.stderr and "only loaded as data" in run.stderr


def test_files_that_are_not_checkpoints_get_one_clear_error(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(text)
    tensor = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        read_checkpoint(tensor)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((REPO / "res" / "tokenizer.ckpt").read_bytes()[:4096])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        VideoTokenizer.from_checkpoint(truncated)


def test_what_training_writes_round_trips_as_data(tmp_path):
    desc = (("space-time_attn", {"n_rep": 1, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    net = DynamicsModel(16, 4, max_frames=4, desc=desc, embed_dim=32, max_side=4, mask_rate=(0.0, 1.0))
    ckpt = {"state_dict": {f"dynamics.{k}": v for k, v in net.state_dict().items()}}
    store_network(ckpt, "dynamics", net.config)  # tuples, nested tuples of dicts: plain data
    torch.save(ckpt, tmp_path / "d.ckpt")
    back = load_network(DynamicsModel, tmp_path / "d.ckpt", "dynamics")
    assert back.config == net.config
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), net.state_dict().values()))
