"""The bundled model (res/) on held-out CoinRun clips (res/heldout.npz, test levels never trained on).

Both comparisons decode through the same tokenizer: the copy baseline is the reconstruction of
the last real frame, and the prediction is the dynamics model's next frame decoded after the
same real frames (`Evaluator`'s `teacher_forced_psnr` vs `copy_last_frame_tokens_psnr`). Copying
the real frame in pixels is no fair baseline while the tokenizer's own error (about 20 dB) is
larger than the change between two CoinRun frames (about 31 dB apart).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from genie.action import LatentAction
from genie.data import to_video
from genie.dynamics import DynamicsModel
from genie.evaluation import Evaluator
from genie.world import load_world

RES = Path(__file__).resolve().parents[1] / "res"


def _report(untrained: bool = False) -> dict:
    world = load_world(str(RES / "genie.ckpt"), str(RES / "tokenizer.ckpt"))
    lam = LatentAction.from_checkpoint(str(RES / "genie.ckpt"))
    dynamics = world.dynamics
    if untrained:  # the same network, freshly initialised
        torch.manual_seed(0)
        dynamics = DynamicsModel(**dynamics.config)
    data = np.load(RES / "heldout.npz")
    video, actions = to_video(torch.from_numpy(data["frames"])), torch.from_numpy(data["actions"])
    horizon = video.shape[2] - 1
    ev = Evaluator(world.tokenizer, lam, dynamics, horizon, steps=25, temperature=1.0,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    ev.update(video, actions)
    return ev.report()


@pytest.fixture(scope="module")
def reports() -> dict:
    return {"trained": _report(), "untrained": _report(untrained=True)}


def test_bundled_dynamics_are_learned_far_beyond_an_untrained_model(reports):
    trained, untrained = reports["trained"]["dynamics"], reports["untrained"]["dynamics"]
    assert reports["trained"]["clips"] >= 16
    assert trained["teacher_forced_psnr"] > untrained["teacher_forced_psnr"] + 2  # dB
    assert all(t > u + 2 for t, u in zip(trained["rollout_psnr_by_horizon"], untrained["rollout_psnr_by_horizon"]))


def test_bundled_rollouts_beat_copying_the_last_frame_they_saw(reports):
    """Frames 1..5 generated from real frame 0 and the inferred latent actions vs frame 0 copied."""
    d = reports["trained"]["dynamics"]
    rollout, copy = np.mean(d["rollout_psnr_by_horizon"]), np.mean(d["copy_first_frame_tokens_psnr_by_horizon"])
    assert rollout > copy


@pytest.mark.xfail(strict=True, reason="one step ahead of real frames the CPU-scale model is no better than a copy yet")
def test_bundled_next_frame_beats_copying_the_last_real_frame(reports):
    d = reports["trained"]["dynamics"]
    assert d["teacher_forced_psnr"] > d["copy_last_frame_tokens_psnr"]
