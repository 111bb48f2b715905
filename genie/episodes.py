"""On-disk format of recorded episodes (written by `sample.py`, read by `split.py`).

Layout under the data root (see `data/README.md`)::

    <root>/<env>/metadata.json                 what was recorded, and how
    <root>/<env>/episodes/level_0000042.npy    one file per level seed

An episode file is one `.npy` array of `T` records (`np.load` reads it), one per step:

    frame   uint8   (H, W, 3)  RGB observation *before* step t
    action  uint8              ground-truth action taken at step t (leads to frame t+1)
    reward  float32            reward received for that action
    first   bool               frame t starts a life: the level start, or its restart after
                               death / success (CoinRun restarts the same level)

The level seed is the number in the file name. Frames are stored raw, never as lossy
video (PITFALLS: colour order, compression); one record array is written with a single
`np.save`, ~7x faster than a zip of separate arrays, which keeps recording close to
procgen's own stepping speed. Files are written to a temporary name and renamed when
complete, so a file with the final name is always whole.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

EPISODE_DIR = "episodes"
METADATA_FILE = "metadata.json"
_NAME = re.compile(r"level_(\d+)\.npy")

# The 16 Procgen games (Cobbe et al. 2020), as `procgen.env.ENV_NAMES` lists them. Kept here so
# that reading data does not need procgen installed (e.g. on a GPU box that only trains).
PROCGEN_GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip


def step_dtype(frame_shape: tuple[int, ...] = (64, 64, 3)) -> np.dtype:
    return np.dtype([("frame", np.uint8, frame_shape), ("action", np.uint8), ("reward", np.float32), ("first", np.bool_)])


class Episode(NamedTuple):
    steps: np.ndarray  # (T,) records of `step_dtype`
    level_seed: int

    @property
    def frames(self) -> np.ndarray:  # (T, H, W, 3) uint8
        return self.steps["frame"]

    def __len__(self) -> int:
        return len(self.steps)


class CorruptEpisodeError(ValueError):
    """An episode file that is truncated, unreadable or internally inconsistent."""


def canonical_env_name(env_name: str) -> str:
    """Map a user-facing name (`Coinrun`, `coinrun`) to procgen's id, or list the valid ones."""
    name = env_name.strip().lower()
    if name not in PROCGEN_GAMES:
        raise ValueError(f"unknown procgen game {env_name!r}; valid games: {', '.join(PROCGEN_GAMES)}")
    return name


def env_dir(root: str | os.PathLike, env_name: str) -> Path:
    """The folder holding one game's data: `<root>/<procgen id>` (e.g. `data/coinrun`)."""
    return Path(root) / canonical_env_name(env_name)


def episode_path(episodes: Path, level_seed: int) -> Path:
    return episodes / f"level_{level_seed:07d}.npy"


def write_episode(path: Path, episode: Episode) -> None:
    """Write atomically: a temporary file first, renamed into place once complete."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, episode.steps, allow_pickle=False)
    os.replace(tmp, path)


def read_episode(path: Path) -> Episode:
    """Load and validate one episode; any defect raises `CorruptEpisodeError` naming the file."""
    match = _NAME.fullmatch(path.name)
    if not match:
        raise CorruptEpisodeError(f"{path.name}: not an episode file name (level_<seed>.npy)")
    try:
        steps = np.load(path, allow_pickle=False)
    except Exception as e:  # truncation, bad header, ...: all mean the same here
        raise CorruptEpisodeError(f"{path.name}: unreadable ({type(e).__name__}: {e})") from e
    if steps.dtype.names != step_dtype().names or steps.ndim != 1 or len(steps) == 0:
        raise CorruptEpisodeError(f"{path.name}: not an episode record array (dtype {steps.dtype}, shape {steps.shape})")
    if steps.dtype["frame"].shape[-1:] != (3,) or not steps["first"][0]:
        raise CorruptEpisodeError(f"{path.name}: frames are not RGB or the first frame does not start a life")
    return Episode(steps, int(match.group(1)))


def list_episodes(episodes: Path) -> list[Path]:
    """Complete episode files, sorted by level seed (temporary files are never listed)."""
    return sorted(p for p in episodes.glob("level_*.npy") if _NAME.fullmatch(p.name))
