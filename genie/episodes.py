"""On-disk format of recorded episodes (written by `sample.py`, read by `split.py`).

Layout under the data root (see `data/README.md`)::

    <root>/<env>/metadata.json                 what was recorded, and how
    <root>/<env>/episodes/level_0000042.npy.zst    one file per level seed

An episode file is a zstandard-compressed `.npy` array of `T` records, one per step
(`read_episode` loads it; so does `np.load(io.BytesIO(zstandard.decompress(data)))`):

    frame   uint8   (H, W, 3)  RGB observation *before* step t
    action  uint8              ground-truth action taken at step t (leads to frame t+1)
    reward  float32            reward received for that action
    first   bool               frame t starts a life: the level start, or its restart after
                               death / success (CoinRun restarts the same level)

The level seed is the number in the file name. Frames are stored losslessly, never as
lossy video (video codecs blur the small agent and can swap colour order). Why zstandard
level 1: CoinRun frames shrink ~16x for ~11-15 us of CPU per frame, about what writing them
raw costs, and raw
frames at sample.py's ~35k frames/s (12 KiB each) would outrun a typical ~400 MB/s
disk. App. F's 10k x 1000-step dataset takes ~7.6 GB instead of 123 GB (762 bytes per
frame, measured by bench/bench_data.py). The frame checksum catches corruption. Files are
written to a temporary name and renamed when complete, so a final name is always whole.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

EPISODE_DIR = "episodes"
METADATA_FILE = "metadata.json"
_NAME = re.compile(r"level_(\d+)\.npy\.zst")
_ZSTD_LEVEL = 1

# The 16 Procgen games (Cobbe et al. 2020), as `procgen.env.ENV_NAMES` lists them. Kept here so
# that reading data does not need procgen installed (e.g. on a GPU box that only trains).
PROCGEN_GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip


def step_dtype(frame_shape: tuple[int, ...] = (64, 64, 3)) -> np.dtype:
    return np.dtype(
        [("frame", np.uint8, frame_shape), ("action", np.uint8), ("reward", np.float32), ("first", np.bool_)]
    )


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
    return episodes / f"level_{level_seed:07d}.npy.zst"


def level_seed_of(path: Path) -> int:
    match = _NAME.fullmatch(path.name)
    if not match:
        raise CorruptEpisodeError(f"{path.name}: not an episode file name (level_<seed>.npy.zst)")
    return int(match.group(1))


def write_episode(path: Path, episode: Episode) -> None:
    """Write atomically: a temporary file first, renamed into place once complete."""
    import zstandard  # only recording and splitting need it, not training

    header = io.BytesIO()  # the .npy header, then the records streamed without a copy
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(episode.steps))
    size = header.tell() + episode.steps.nbytes
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # never shared, even with a stray old worker
    cctx = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
    with open(tmp, "wb") as f, cctx.stream_writer(f, size=size, closefd=False) as z:
        z.write(header.getbuffer())
        z.write(memoryview(np.ascontiguousarray(episode.steps)).cast("B"))
    os.replace(tmp, path)


def read_episode(path: Path) -> Episode:
    """Load and validate one episode; any defect raises `CorruptEpisodeError` naming the file."""
    level_seed = level_seed_of(path)
    import zstandard

    try:
        steps = np.load(io.BytesIO(zstandard.decompress(path.read_bytes())), allow_pickle=False)
    except Exception as e:  # truncation, checksum, bad header, ...: all mean the same here
        raise CorruptEpisodeError(f"{path.name}: unreadable ({type(e).__name__}: {e})") from e
    if steps.dtype.names != step_dtype().names or steps.ndim != 1 or len(steps) == 0:
        raise CorruptEpisodeError(
            f"{path.name}: not an episode record array (dtype {steps.dtype}, shape {steps.shape})"
        )
    if steps.dtype["frame"].shape[-1:] != (3,) or not steps["first"][0]:
        raise CorruptEpisodeError(f"{path.name}: frames are not RGB or the first frame does not start a life")
    return Episode(steps, level_seed)


def list_episodes(episodes: Path) -> list[Path]:
    """Complete episode files, sorted by level seed (temporary files are never listed)."""
    return sorted(p for p in episodes.glob("level_*.npy.zst") if _NAME.fullmatch(p.name))
