"""Delta_t PSNR (Genie Sec. 3) of `Evaluator` on a synthetic world whose answer is known by hand.

The world: one token per frame, token v shown as a flat grey frame at LEVELS[v], and the rule
x_{t+1} = (x_t + a_t) mod 4 with two actions. Its networks are stand-ins with the interface
`Evaluator` uses: a lossless tokenizer, a LAM that infers the true actions, and a dynamics model
that applies the rule exactly (or ignores the actions).
"""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from genie.evaluation import Evaluator
from genie.metrics import PSNR_CAP

LEVELS = torch.tensor([-1.0, -0.5, 0.0, 0.5])  # the grey of each token id
VOCAB, ACTIONS, SIDE = 4, 2, 8


class FlatTokenizer(nn.Module):
    codebook_size = VOCAB

    def tokenize(self, video: torch.Tensor) -> SimpleNamespace:  # (b c T H W) -> indices (b T 1 1)
        grey = video.mean(dim=(1, 3, 4))
        return SimpleNamespace(indices=(grey[..., None] - LEVELS).abs().argmin(-1)[..., None, None])

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:  # (b T 1 1) ids or (b 1 T 1 1) greys -> (b 3 T H W)
        grey = tokens[:, 0, :, 0, 0] if tokens.is_floating_point() else LEVELS[tokens[:, :, 0, 0]]
        return grey[:, None, :, None, None].expand(-1, 3, -1, SIDE, SIDE).clone()

    def code_table(self) -> torch.Tensor:  # (V d): each token's code is its grey
        return LEVELS[:, None].clone()


class TrueActions(nn.Module):
    num_actions, max_frames = ACTIONS, 8

    def __init__(self, actions: torch.Tensor):
        super().__init__()
        self.actions = actions

    def encode(self, video: torch.Tensor):
        return (SimpleNamespace(actions=self.actions[:, : video.shape[2] - 1]),)


class RuleDynamics(nn.Module):
    """x_{t+1} = (x_t + a_t) mod 4 (act_id[:, t] leads out of frame t), or x_{t+1} = x_t."""

    act_vocab, max_frames = ACTIONS, 8

    def __init__(self, use_actions: bool = True):
        super().__init__()
        self.use_actions = use_actions
        self.rollouts: list[torch.Tensor] = []  # the actions of each rollout from frame 0 alone

    def generate(self, tokens, acts, *, steps, temperature, num_frames, generator):
        if tokens.shape[1] == 1 and num_frames > 1:
            self.rollouts.append(acts[:, :num_frames].clone())
        frames = [tokens]
        for i in range(num_frames):
            a = acts[:, tokens.shape[1] - 1 + i, None, None, None]
            frames.append((frames[-1][:, -1:] + a * self.use_actions) % VOCAB)
        return torch.cat(frames, 1)


# Six clips of 5 frames, from each first token; tokens wrap around (3 + 1 = 0).
X0 = torch.tensor([0, 1, 2, 3, 0, 1])
TRUE = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])


def _clips() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = (X0[:, None] + torch.cat([torch.zeros(6, 1, dtype=torch.long), TRUE.cumsum(1)], 1)) % VOCAB
    return FlatTokenizer().decode(tokens[..., None, None]), torch.cat([TRUE, torch.zeros(6, 1, dtype=torch.long)], 1)


def _psnr_of_greys(a: float, b: float) -> float:
    """PSNR of two flat frames in [-1, 1] by hand: MSE = (a - b)^2, peak-to-peak 2; equal: the cap."""
    return PSNR_CAP if a == b else 10 * math.log10(4 / (a - b) ** 2)


class HedgingDynamics(RuleDynamics):
    """Samples the copy of the last frame, but gives the rule's next token as much probability:
    each new token's expected code is the mean of the two greys."""

    def __init__(self):
        super().__init__(use_actions=False)

    def generate_expected(self, tokens, acts, values, *, steps, temperature, num_frames, generator):
        copied = self.generate(tokens, acts, steps=steps, temperature=temperature, num_frames=num_frames,
                               generator=generator)  # fmt: skip
        ruled = RuleDynamics().generate(tokens, acts, steps=steps, temperature=temperature, num_frames=num_frames,
                                        generator=generator)[:, -num_frames:]  # fmt: skip
        mean = (values[copied[:, -num_frames:]] + values[ruled]) / 2  # (b n 1 1 d)
        return SimpleNamespace(tokens=copied, expected=mean.permute(0, 4, 1, 2, 3))


def _evaluate(dynamics: RuleDynamics, seed: int = 0, render: str = "tokens") -> dict:
    video, true_actions = _clips()
    ev = Evaluator(FlatTokenizer(), TrueActions(TRUE), dynamics, horizon=4,
                   generator=torch.Generator().manual_seed(seed), render=render)  # fmt: skip
    ev.update(video, true_actions)
    return ev.report()


def test_identical_rollouts_whatever_the_actions_have_zero_delta_psnr():
    report = _evaluate(RuleDynamics(use_actions=False))
    # the rollouts are wrong (frozen at frame 0) yet no worse with other actions: no control
    assert report["dynamics"]["rollout_psnr_by_horizon"][-1] < 50  # 5 of 6 clips move, and 1 does not (100 dB)
    assert report["delta_psnr_t4"]["genie"] == 0.0 and report["delta_psnr_t4"]["genie_redux"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delta_psnr_of_a_perfect_world_model_by_hand(seed):
    dynamics = RuleDynamics()
    report = _evaluate(dynamics, seed)
    assert report["dynamics"]["rollout_psnr_by_horizon"] == [PSNR_CAP] * 4  # the true actions reproduce the clip
    # GenieRedux's variant changes the last action to the other one of the two: frame 4 is one
    # token off. Real token 1, 2, 1 -> 2, 3, 0: 0.5 of grey, PSNR 10 log10(4 / 0.25) = 12.041 dB;
    # 3, 0, 3 -> 0, 3, 0 (around the wrap): 1.5 of grey, 10 log10(4 / 2.25) = 2.499 dB. Against
    # the capped 100 dB of the true actions: 100 - (12.041 + 2.499) / 2 = 92.730.
    assert report["delta_psnr_t4"]["genie_redux"] == pytest.approx(92.730, abs=1e-3)
    # Genie's: 4 uniformly random actions. Which ones is up to the generator; the rollouts from
    # frame 0 with 4 actions were the true ones, the redux ones and the random ones.
    rollouts = [r.tolist() for r in dynamics.rollouts]
    assert len(rollouts) == 3
    redux = [row[:3] + [1 - row[3]] for row in TRUE.tolist()]
    rollouts.remove(TRUE.tolist())
    rollouts.remove(redux)
    (random,) = rollouts
    real4 = (X0 + TRUE.sum(1)) % VOCAB
    alt4 = (X0 + torch.tensor(random).sum(1)) % VOCAB
    expected = [PSNR_CAP - _psnr_of_greys(LEVELS[r].item(), LEVELS[a].item()) for r, a in zip(real4, alt4)]
    assert report["delta_psnr_t4"]["genie"] == pytest.approx(sum(expected) / len(expected), abs=1e-3)


def test_no_delta_psnr_below_horizon_four():
    video, true_actions = _clips()
    ev = Evaluator(FlatTokenizer(), TrueActions(TRUE), RuleDynamics(), horizon=3)
    ev.update(video, true_actions)
    assert "delta_psnr_t4" not in ev.report()


# Of the 6 x 4 transitions of the clips, the 11 with action 1 change the token.
CHANGED = TRUE.sum().item() / TRUE.numel()


def test_token_counts_of_a_perfect_and_a_copying_world_model_by_hand():
    perfect = _evaluate(RuleDynamics())["dynamics"]["teacher_forced_tokens"]
    assert perfect == {"accuracy": 1.0, "changed_share": round(CHANGED, 4), "changed_accuracy": 1.0,
                       "changed_copied": 0.0, "copied_share": round(1 - CHANGED, 4)}  # fmt: skip
    copying = _evaluate(RuleDynamics(use_actions=False))["dynamics"]["teacher_forced_tokens"]
    assert copying == {"accuracy": round(1 - CHANGED, 4), "changed_share": round(CHANGED, 4),
                       "changed_accuracy": 0.0, "changed_copied": 1.0, "copied_share": 1.0}  # fmt: skip


def test_rendering_the_expected_codes_shows_the_mean_of_what_the_model_hedges_between():
    tokens = _evaluate(HedgingDynamics(), render="tokens")
    expected = _evaluate(HedgingDynamics(), render="expected")
    assert expected["render"] == "expected" and tokens["render"] == "tokens"
    # the sampled tokens are the copies either way
    assert expected["dynamics"]["teacher_forced_tokens"] == tokens["dynamics"]["teacher_forced_tokens"]
    assert tokens["dynamics"]["teacher_forced_psnr"] == tokens["dynamics"]["copy_last_frame_psnr"]
    # by hand: frame t+1 shown as the mean grey of real frames t and t+1; a changed frame is half
    # a step of grey off (0.25, or 0.75 across the wrap from 3 to 0), an unchanged one exact
    x = (X0[:, None] + torch.cat([torch.zeros(6, 1, dtype=torch.long), TRUE.cumsum(1)], 1)) % VOCAB
    per_clip = []
    for row in x.tolist():
        greys = [LEVELS[v].item() for v in row]
        per_clip.append(sum(_psnr_of_greys((a + b) / 2, b) for a, b in zip(greys, greys[1:])) / 4)
    assert expected["dynamics"]["teacher_forced_psnr"] == pytest.approx(sum(per_clip) / 6, abs=1e-3)
    assert expected["dynamics"]["teacher_forced_psnr"] > tokens["dynamics"]["teacher_forced_psnr"] + 1


def test_an_unknown_render_is_refused():
    with pytest.raises(ValueError, match="render"):
        Evaluator(FlatTokenizer(), TrueActions(TRUE), RuleDynamics(), horizon=4, render="mean")
