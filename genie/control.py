"""The control probe: hold each action from the same level starts, in the game and in the learned
world, and compare how far the scene moves.

Shape legend: A actions, L levels, T frames after the start, c H W pixels.

Genie's latent actions are meant to be controls: holding one should move the agent the same way
from any start. CoinRun's camera follows the agent, so the scene's shift between consecutive
frames (`genie.motion.phase_shift`) reads what an action did without any learned model. The
game is the reference: from the first frame of each level (a level's seed fixes it), hold each
recorded action for T frames. The world model gets the same first frames and holds each of its
actions. How far apart the most-leftward and most-rightward actions move the scene (and the
most- and least-upward) is the spread; the model's spread over the game's says how much of the
game's control the actions reproduce.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from genie.data import to_frames
from genie.motion import phase_shift

# CoinRun's effective controls: a button combo moves left, right or neither, and jumps or not
# (DOWN and the letter keys do nothing in CoinRun).
EFFECTIVE_GROUPS = ("left", "left+up", "none", "up", "right", "right+up")


def effective_group(action_name: str) -> int:
    """Index in `EFFECTIVE_GROUPS` of a procgen button combo such as `RIGHT+UP` or `D`."""
    keys = set(action_name.split("+"))
    side = "left" if "LEFT" in keys else "right" if "RIGHT" in keys else ""
    name = "+".join(k for k in (side, "up" if "UP" in keys else "") if k) or "none"
    return EFFECTIVE_GROUPS.index(name)


def group_contingency(table: np.ndarray, action_names: list[str]) -> np.ndarray:
    """A latent x recorded-action count table `(K A)` summed into effective groups `(K 6)`."""
    out = np.zeros((table.shape[0], len(EFFECTIVE_GROUPS)), dtype=table.dtype)
    for a, name in enumerate(action_names):
        out[:, effective_group(name)] += table[:, a]
    return out


class Shifts(NamedTuple):
    """Scene shifts per action in pixels per frame: over all counted frame pairs, and step by step."""

    dx: np.ndarray  # (A) mean over the levels and frames
    dy: np.ndarray  # (A)
    dx_by_step: np.ndarray  # (A T) mean over the levels at each step; NaN where no pair counts
    dy_by_step: np.ndarray  # (A T)


def measure_shifts(frames: torch.Tensor, valid: torch.Tensor | None = None) -> Shifts:
    """Scene shift per action, `frames (A L T+1 c H W)`; `valid (A L T)` marks the frame pairs to
    count (a restart of the level in between is no motion of the action's making).

    The step-by-step means show whether an action keeps moving the scene or moves it once and
    stalls, which the overall mean cannot tell apart.
    """
    A, L, T1 = frames.shape[:3]
    a = rearrange(frames[:, :, :-1], "A L T c H W -> (A L T) c H W")
    b = rearrange(frames[:, :, 1:], "A L T c H W -> (A L T) c H W")
    shift = phase_shift(a, b)
    dx = rearrange(shift.dx, "(A L T) -> A L T", A=A, L=L)
    dy = rearrange(shift.dy, "(A L T) -> A L T", A=A, L=L)
    w = torch.ones(A, L, T1 - 1) if valid is None else valid.float()
    total, per_step = w.sum((1, 2)).clamp(min=1), w.sum(1)  # (A), (A T)
    by_step = per_step.clamp(min=1)
    none = torch.where(per_step > 0, 0.0, float("nan"))
    return Shifts(
        dx=((dx * w).sum((1, 2)) / total).numpy(),
        dy=((dy * w).sum((1, 2)) / total).numpy(),
        dx_by_step=((dx * w).sum(1) / by_step + none).numpy(),
        dy_by_step=((dy * w).sum(1) / by_step + none).numpy(),
    )


def mean_shifts(frames: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean scene shift per action, `(dx (A), dy (A))` in pixels per frame (`measure_shifts`)."""
    shifts = measure_shifts(frames, valid)
    return shifts.dx, shifts.dy


def summary(dx: np.ndarray, dy: np.ndarray, names: list[str], shifts: Shifts | None = None) -> dict:
    """Per-action shifts and the spreads: most-rightward minus most-leftward scene shift, and
    the same for down/up (pixels per frame). With `shifts`, also each action's mean shift at
    each step (`None` where no frame pair counted)."""
    out = {
        "actions": names,
        "dx": [round(float(v), 3) for v in dx],
        "dy": [round(float(v), 3) for v in dy],
        "spread_x": round(float(dx.max() - dx.min()), 3),
        "spread_y": round(float(dy.max() - dy.min()), 3),
    }
    if shifts is not None:
        for key in ("dx_by_step", "dy_by_step"):
            out[key] = [[None if np.isnan(v) else round(float(v), 2) for v in row] for row in getattr(shifts, key)]
    return out


def game_probe(env_name: str, level_seeds: list[int], action_names: list[str], num_frames: int,
               distribution_mode: str = "hard", frame_skip: int = 1, warmup: int = 0) -> tuple[dict, np.ndarray]:  # fmt: skip
    """Hold each recorded action for `num_frames` frames from each level's start, in the game
    (each `frame_skip` game frames after the one before, as the data was recorded); with
    `warmup` > 0, from the frame after that many random steps into the level instead
    (`genie.record.hold_action`): at a level's start the agent often stands at a wall.

    Returns the summary and the start frames `(L H W 3)` uint8 that the world model gets.
    """
    from genie.record import hold_action  # procgen is needed here only

    frames, valid = [], []
    for a in tqdm(range(len(action_names)), desc="control probe, game", unit="action", disable=None):
        runs = [hold_action(env_name, seed, a, num_frames, distribution_mode, frame_skip, warmup) for seed in level_seeds]
        frames.append(np.stack([f for f, _ in runs]))  # (L T+1 H W 3)
        valid.append(~np.stack([first[1:] for _, first in runs]))  # (L T)
    video = rearrange(torch.from_numpy(np.stack(frames)), "A L T H W c -> A L T c H W")
    shifts = measure_shifts(video, torch.from_numpy(np.stack(valid)))
    return summary(shifts.dx, shifts.dy, action_names, shifts), np.stack(frames)[0, :, 0]


@torch.no_grad()
def world_probe(world, starts: torch.Tensor, num_frames: int) -> tuple[dict, torch.Tensor]:
    """Hold each of the world's actions for `num_frames` frames from `starts (L c H W)` in [-1, 1].

    Returns the summary and the frames `(A L T+1 c H W)` (the first is the start's
    reconstruction).
    """
    videos = []
    for a in tqdm(range(world.num_actions), desc="control probe, model", unit="action", disable=None):
        frames = [world.reset(starts)]
        frames += [world.step(a) for _ in range(num_frames)]
        videos.append(torch.stack(frames, dim=1).cpu())  # (L T+1 c H W)
    video = torch.stack(videos)
    shifts = measure_shifts(video)
    names = [str(a) for a in range(world.num_actions)]
    return summary(shifts.dx, shifts.dy, names, shifts), video


def probe_grid(video: torch.Tensor, levels: int = 2) -> np.ndarray:
    """The world probe's frames `(A L T+1 c H W)` in [-1, 1] as one image: a row per action of each
    of the first `levels` level starts, frames left to right, uint8 `(A*l*H, (T+1)*W, c)`.

    What the spreads cannot show: whether an action moves the scene, leaves it where it is, or
    dissolves it (a blurred average frame also shifts the phase correlation's peak)."""
    frames = to_frames(rearrange(video[:, :levels], "A l t c H W -> A l c t H W"))  # (A l t H W c) uint8
    return rearrange(frames, "A l t H W c -> (A l H) (t W) c").numpy()


def compare(game: dict, model: dict) -> dict:
    """The model's spreads as fractions of the game's."""
    return {
        "spread_x_ratio": round(model["spread_x"] / max(game["spread_x"], 1e-9), 3),
        "spread_y_ratio": round(model["spread_y"] / max(game["spread_y"], 1e-9), 3),
    }


def describe(dx: float, dy: float, threshold: float = 0.25) -> str:
    """What holding an action does to the agent, in words, from the scene's mean shift per frame.

    The camera follows the agent, so the scene moving left (dx < 0) means the agent runs right,
    and the scene moving down (dy > 0, image rows grow downward) means it rises. Shifts under
    `threshold` pixels per frame on both axes are "unclear": too small to tell from noise.
    """
    parts = []
    if abs(dx) >= threshold:
        parts.append("right" if dx < 0 else "left")
    if abs(dy) >= threshold:
        parts.append("up" if dy > 0 else "down")
    return " + ".join(parts) or "unclear"
