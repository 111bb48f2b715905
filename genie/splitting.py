"""Split recorded episodes into train/val/test **by level seed** and pack them for training.

Genie's CoinRun case study evaluates on levels it never trained on, so a level seed
belongs to exactly one split. Each split is packed into contiguous arrays that
`genie.data` memory-maps, so a training clip is one slice with no decoding::

    <root>/<env>/<split>/frames.npy    uint8   (N, H, W, 3)  all frames of the split's episodes
    <root>/<env>/<split>/actions.npy   uint8   (N,)          action taken at each frame
    <root>/<env>/<split>/rewards.npy   float32 (N,)
    <root>/<env>/<split>/firsts.npy    bool    (N,)          a life starts here (also every episode's first frame)
    <root>/<env>/<split>/index.json    per episode: level seed, first row, length
    <root>/<env>/splits.json           ratios, seed, level seeds per split, episodes left out and why

The assignment is a seeded permutation of the sorted level seeds, so the same
episodes, ratios and seed always give the same split. Re-running rewrites identical
files (each split is built in a temporary folder and swapped in when complete).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genie.episodes import EPISODE_DIR, CorruptEpisodeError, env_dir, list_episodes, read_episode

SPLITS = ("train", "val", "test")
INDEX_FILE = "index.json"
SPLITS_FILE = "splits.json"
_FIELD = {"frames": "frame", "actions": "action", "rewards": "reward", "firsts": "first"}  # packed <- episode


class SplitError(ValueError):
    """Nothing (valid) to split: a missing or empty episode folder, or too few levels."""


def assign_levels(level_seeds: list[int], ratios: tuple[float, ...], seed: int) -> dict[str, list[int]]:
    """Deterministically deal level seeds into splits with (close to) the given ratios.

    Every split with a positive ratio gets at least one level, taken from train.
    """
    if len(ratios) != len(SPLITS) or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers for {SPLITS} (got {ratios})")
    wanted = [name for name, r in zip(SPLITS, ratios) if r > 0]
    if len(level_seeds) < len(wanted):
        raise SplitError(
            f"{len(level_seeds)} level(s) cannot fill the {len(wanted)} splits {wanted}; record more levels"
        )
    total = sum(ratios)
    counts = {name: int(len(level_seeds) * r / total) for name, r in zip(SPLITS, ratios)}
    for name in wanted:  # small datasets: no requested split may be empty
        counts[name] = max(counts[name], 1)
    counts["train"] = len(level_seeds) - counts["val"] - counts["test"]
    order = np.random.default_rng(seed).permutation(sorted(level_seeds))
    bounds = np.cumsum([0] + [counts[name] for name in SPLITS])
    return {name: sorted(int(s) for s in order[a:b]) for name, a, b in zip(SPLITS, bounds[:-1], bounds[1:])}


def split(
    root: str | os.PathLike, env_name: str, ratios=(0.9, 0.05, 0.05), seed: int = 0, progress: bool = True
) -> dict:
    """Validate every episode, assign levels to splits, and pack each split. Returns the report."""
    out = env_dir(root, env_name)
    episodes = out / EPISODE_DIR
    if not episodes.is_dir():
        raise SplitError(f"no episode folder at {episodes}; record episodes first with sample.py")
    paths = list_episodes(episodes)
    if not paths:
        raise SplitError(f"{episodes} holds no episode files (level_*.npy.zst); record episodes first with sample.py")

    # Pass 1: validate everything (a truncated or corrupt file is reported, never packed).
    valid: dict[int, tuple[Path, int, tuple]] = {}  # level seed -> (path, length, frame shape)
    left_out: dict[str, str] = {}
    for path in tqdm(paths, desc="checking episodes", unit="ep", disable=not progress):
        try:
            ep = read_episode(path)
        except CorruptEpisodeError as e:
            left_out[path.name] = str(e)
            print(f"split.py: leaving out {e}", file=sys.stderr)
            continue
        valid[ep.level_seed] = (path, len(ep), ep.frames.shape[1:])
    shapes = {v[2] for v in valid.values()}
    if len(shapes) > 1:
        raise SplitError(f"episodes in {episodes} have different frame shapes {sorted(shapes)}")
    if not valid:
        raise SplitError(f"none of the {len(paths)} episode files in {episodes} is readable")

    (frame_shape,) = shapes
    levels = assign_levels(list(valid), ratios, seed)
    report = {
        "ratios": list(ratios),
        "seed": seed,
        "splits": {name: {"levels": len(lv), "frames": sum(valid[s][1] for s in lv)} for name, lv in levels.items()},
        "left_out": left_out,
        "level_seeds": levels,
    }
    # Pass 2: pack. Episodes are re-read one at a time, so memory stays at one episode.
    for name, seeds in levels.items():
        if seeds:
            _pack(out / name, [valid[s][:2] for s in seeds], frame_shape, progress)
        elif (out / name).exists():
            shutil.rmtree(out / name)
    tmp = out / (SPLITS_FILE + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out / SPLITS_FILE)
    return report


def _pack(dest: Path, episodes: list[tuple[Path, int]], frame_shape: tuple, progress: bool) -> None:
    lengths = [n for _, n in episodes]
    seeds = []
    total = sum(lengths)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    arrays = {
        "frames": np.lib.format.open_memmap(tmp / "frames.npy", "w+", np.uint8, (total, *frame_shape)),
        "actions": np.lib.format.open_memmap(tmp / "actions.npy", "w+", np.uint8, (total,)),
        "rewards": np.lib.format.open_memmap(tmp / "rewards.npy", "w+", np.float32, (total,)),
        "firsts": np.lib.format.open_memmap(tmp / "firsts.npy", "w+", np.bool_, (total,)),
    }
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
    for (path, n), row in tqdm(
        list(zip(episodes, starts)), desc=f"packing {dest.name}", unit="ep", disable=not progress
    ):
        ep = read_episode(path)
        for key, array in arrays.items():
            array[row : row + n] = ep.steps[_FIELD[key]]
        arrays["firsts"][row] = True  # an episode boundary is a reset for clip purposes
        seeds.append(ep.level_seed)
    for array in arrays.values():
        array.flush()
    del arrays
    index = {"num_frames": total, "level_seeds": seeds, "starts": starts, "lengths": lengths}
    (tmp / INDEX_FILE).write_text(json.dumps(index) + "\n")
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
