"""scripts/first_step.py: the game's first step from level starts against a recorded-action model's beliefs."""

import json
import math
from pathlib import Path

import pytest
import torch

from genie.action import LatentAction
from genie.dynamics import DynamicsModel
from genie.tokenizer import VideoTokenizer
from helpers.stage2 import load_script
from helpers.worlds import LAM_ARGS, save_genie

REPO_TOKENIZER = Path(__file__).resolve().parents[1] / "res" / "tokenizer.ckpt"


def _root(tmp_path):
    root = tmp_path / "data" / "coinrun"
    root.mkdir(parents=True)
    (root / "metadata.json").write_text(json.dumps({"env_name": "coinrun", "frame_skip": 8}))
    (root / "splits.json").write_text(json.dumps({"level_seeds": {"test": [100000, 100001]}}))
    return root.parent


def _checkpoint(tmp_path, source: str):
    tokenizer = VideoTokenizer.from_checkpoint(REPO_TOKENIZER)
    desc = (("space-time_attn", {"n_rep": 1, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    torch.manual_seed(0)
    dynamics = DynamicsModel(tokenizer.codebook_size, 15, max_frames=4, desc=desc, embed_dim=32, max_side=16)
    path = save_genie(tmp_path / f"{source}.ckpt", LatentAction(**LAM_ARGS), dynamics.eval(), REPO_TOKENIZER,
                      tokenizer.codebook_size)  # fmt: skip
    ckpt = torch.load(path, weights_only=False)
    ckpt["action_source"] = source
    ckpt["networks"]["lam"]["inp_shape"] = (64, 64)
    torch.save(ckpt, path)
    return path


def test_reports_the_games_step_and_the_models_beliefs(tmp_path):
    main = load_script("scripts/first_step.py", "first_step_script").main
    out = tmp_path / "report.json"
    report = main(["--checkpoint", str(_checkpoint(tmp_path, "recorded")), "--root", str(_root(tmp_path)),
                   "--levels", "2", "--steps", "4", "--actions", "RIGHT+UP", "NOOP", "--json", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == report
    jump, still = report["actions"]["RIGHT+UP"], report["actions"]["NOOP"]
    assert jump["changed"] > 0.5 > still["changed"]  # the game: a jump changes most tokens, standing few
    # an untrained model guesses about uniformly: log(1/1000) = -6.9
    assert abs(jump["logp_true"] - report["uniform_logp"]) < 1.5 and report["uniform_logp"] == round(-math.log(1000), 2)
    for row in (jump, still):
        assert set(row) >= {"decoded_4_rounds", "decoded_1_rounds"}
        assert all(0 <= v <= 1 for d in ("decoded_4_rounds", "decoded_1_rounds") for v in row[d].values())


def test_refuses_a_latent_action_checkpoint_and_unknown_buttons(tmp_path):
    main = load_script("scripts/first_step.py", "first_step_script").main
    root = _root(tmp_path)
    with pytest.raises(SystemExit, match="latent actions"):
        main(["--checkpoint", str(_checkpoint(tmp_path, "latent")), "--root", str(root)])
    with pytest.raises(SystemExit, match="unknown buttons"):
        main(["--checkpoint", str(_checkpoint(tmp_path, "recorded")), "--root", str(root), "--actions", "JUMP"])
