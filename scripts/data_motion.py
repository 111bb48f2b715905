"""How much each recorded action moves the scene in a recorded data set: the motion a world model
can learn to tie to its actions.

    python scripts/data_motion.py --root ./data --split train --levels 60
    python scripts/data_motion.py --root ./data/sticky8 --split train --levels 60 --json out.json

For each consecutive frame pair of the first `--levels` levels of the split (a restart of the
level in between excluded), the scene's shift by phase correlation (`genie.motion`), grouped
by the effective group of the action taken (`genie.control.EFFECTIVE_GROUPS`). Prints the mean
(dx, dy) per group in pixels per frame, and the share of pairs with any horizontal shift
(|dx| >= 0.25 px). CoinRun's camera follows the agent: running right shifts the scene left
(dx < 0), jumping shifts it down (dy > 0).

With `--checkpoint` (a `genie.py fit` checkpoint) the pairs are grouped by the latent action its
LAM infers instead, over the same frames: how much of the recorded actions' motion the latent
actions carry, before any dynamics model has to render it (the LAM's share of the control probe).

    python scripts/data_motion.py --root ./data/skip8 --levels 60 --checkpoint runs/<run>/checkpoints/last.ckpt

With `--whole R`, also the whole-pixel shift within +-R that `DynamicsModel(scroll=R)` is trained
to predict (`genie.motion.closest_shift`), per group and split by whether the scene stood still
(shift (0, 0)) in the step before: its mean, its most common dx and the share with no horizontal
shift; and the share of all pairs whose shift lies at the limit R (clipped).

    python scripts/data_motion.py --root ./data/skip8 --levels 60 --whole 8 --whole 16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.action import LatentAction  # noqa: E402
from genie.control import EFFECTIVE_GROUPS, summary  # noqa: E402
from genie.data import to_video  # noqa: E402
from genie.motion import closest_shift, phase_shift  # noqa: E402
from genie.probe import group_table  # noqa: E402


def latent_actions(lam: LatentAction, frames: np.ndarray) -> np.ndarray:
    """The LAM's action for each consecutive pair of `frames (n H W c)` uint8, `(n-1)`: windows of
    the LAM's clip length overlapping by one frame (one batch), each pair read in the one window
    holding it; a shorter window at the end."""
    t, n = lam.max_frames, len(frames)
    video = to_video(torch.from_numpy(np.array(frames)))  # (c n H W)
    starts = list(range(0, n - 1, t - 1))
    full = [s for s in starts if s + t <= n]
    out = []
    with torch.no_grad():
        if full:
            windows = torch.stack([video[:, s : s + t] for s in full])  # (w c t H W)
            out.append(lam.encode(windows)[0].actions.reshape(-1).numpy())  # pairs in order
        rest = [s for s in starts if s + t > n]
        if rest:
            out.append(lam.encode(video[None, :, rest[0] :])[0].actions[0].numpy())
    return np.concatenate(out)[: n - 1]


def whole_shifts(dx: np.ndarray, dy: np.ndarray, still_before: np.ndarray, group: np.ndarray, names: list[str],
                 limit: int) -> dict:  # fmt: skip
    """`--whole`'s statistics of whole-pixel shifts `dx, dy (n)` per group, after a still step or not."""
    out = {"limit": limit, "share_at_limit_x": round(float((np.abs(dx) >= limit).mean()), 3),
           "share_at_limit_y": round(float((np.abs(dy) >= limit).mean()), 3), "groups": {}}  # fmt: skip
    for g, name in enumerate(names):
        for label, when in (("after_still", still_before), ("after_moving", ~still_before)):
            pick = (group == g) & when
            if not pick.any():
                continue
            values, counts = np.unique(dx[pick], return_counts=True)
            out["groups"].setdefault(name, {})[label] = {
                "pairs": int(pick.sum()), "dx": round(float(dx[pick].mean()), 2),
                "dy": round(float(dy[pick].mean()), 2), "most_common_dx": int(values[counts.argmax()]),
                "share_dx_0": round(float((dx[pick] == 0).mean()), 2)}  # fmt: skip
    return out


def data_motion(
    split_dir: Path, action_names: list[str], levels: int, lam: LatentAction | None = None, whole: list[int] = ()
) -> dict:
    index = json.loads((split_dir / "index.json").read_text())  # per episode: first row and length
    episodes = list(zip(index["starts"], index["lengths"]))
    frames = np.load(split_dir / "frames.npy", mmap_mode="r")
    actions = np.load(split_dir / "actions.npy", mmap_mode="r")
    firsts = np.load(split_dir / "firsts.npy", mmap_mode="r")
    groups_of = group_table(action_names).numpy()
    dx, dy, group = [], [], []
    found = {r: ([], [], []) for r in whole}  # whole-pixel dx, dy and "still the step before" per limit
    for start, length in episodes[:levels]:
        rows = slice(start, start + length)
        f = torch.from_numpy(np.array(frames[rows])).permute(0, 3, 1, 2)  # (n c H W)
        shift = phase_shift(f[:-1], f[1:])
        keep = ~np.array(firsts[rows])[1:]  # a new life in frame t+1: not the action's doing
        dx.append(shift.dx.numpy()[keep])
        dy.append(shift.dy.numpy()[keep])
        taken = groups_of[np.array(actions[rows])[:-1]] if lam is None else latent_actions(lam, frames[rows])
        group.append(taken[keep])
        for r, (wx, wy, still) in found.items():
            w = closest_shift(f[:-1].float(), f[1:].float(), r).numpy()  # (n-1 2)
            before = np.concatenate([[False], (w[:-1] == 0).all(1) & keep[:-1]])  # pair 0: no step before
            wx.append(w[keep, 0])
            wy.append(w[keep, 1])
            still.append(before[keep])
    dx, dy, group = np.concatenate(dx), np.concatenate(dy), np.concatenate(group)
    names = EFFECTIVE_GROUPS if lam is None else [f"latent {k}" for k in range(lam.num_actions)]
    per_group = {
        name: {"pairs": int((group == g).sum()), "dx": round(float(dx[group == g].mean()), 3),
               "dy": round(float(dy[group == g].mean()), 3)}
        for g, name in enumerate(names) if (group == g).any()
    }  # fmt: skip
    means = np.array([[v["dx"], v["dy"]] for v in per_group.values()])
    spreads = summary(means[:, 0], means[:, 1], list(per_group))  # as the control probe measures them
    result = {"levels": min(levels, len(episodes)), "pairs": len(dx), "mean_abs_dx": round(float(np.abs(dx).mean()), 3),
              "share_moving_x": round(float((np.abs(dx) >= 0.25).mean()), 3), "groups": per_group,
              "spread_x": spreads["spread_x"], "spread_y": spreads["spread_y"]}  # fmt: skip
    for r, parts in found.items():
        wx, wy, still = (np.concatenate(p) for p in parts)
        result[f"whole_{r}"] = whole_shifts(wx, wy, still, group, names, r)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="data_motion.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="./data")
    p.add_argument("--env_name", default="Coinrun")
    p.add_argument("--split", default="train")
    p.add_argument("--levels", type=int, default=60)
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--checkpoint", help="group by this genie.py fit checkpoint's latent actions instead")
    p.add_argument("--whole", type=int, action="append", default=[], metavar="R",
                   help="also whole-pixel shifts within +-R (repeatable)")
    args = p.parse_args(argv)
    env_dir = Path(args.root) / args.env_name.lower()
    try:
        meta = json.loads((env_dir / "metadata.json").read_text())
        lam = LatentAction.from_checkpoint(args.checkpoint).eval() if args.checkpoint else None
        result = data_motion(env_dir / args.split, meta["action_names"], args.levels, lam, args.whole)
    except (OSError, KeyError, ValueError) as e:  # a bad checkpoint: CheckpointError is a ValueError
        print(f"data_motion.py: error: {env_dir}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    result = {"root": args.root, "split": args.split, "policy": meta.get("policy"), "checkpoint": args.checkpoint,
              **result}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
