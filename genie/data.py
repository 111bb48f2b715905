"""Clips of recorded Procgen video for training and evaluation.

Shape legend (used throughout the repo):
    b batch, c channels (3, RGB), t frames, h w height and width

The project's one pixel convention: outside this module videos are float `(b c t h w)`
in [-1, 1]. On disk frames are uint8 `(t h w c)`. `to_video` / `to_frames` convert
between the two and are the only place that does: a model trained on one pixel range and
fed another fails silently.

A clip is `num_frames` consecutive frames of one life: it never crosses an episode
boundary nor a CoinRun restart (death or success), which would teach the model to
teleport. `actions[t]` is the ground-truth action taken at frame t, i.e. the one that
leads from frame t to frame t+1 (the last one leads out of the clip).

Loaders carry uint8 `RawClip`s (4x fewer bytes between processes and to the GPU) and
`VideoDataModule.on_after_batch_transfer` turns them into float `Clip`s on the device, so
the conversion costs the training step almost nothing. Outside a Trainer, call
`to_clip(batch)` on what a loader yields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from einops import rearrange
from torch.utils.data import DataLoader, Dataset

from genie.episodes import METADATA_FILE, env_dir
from genie.splitting import INDEX_FILE


def to_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 `(... t h w c)` in [0, 255] -> float `(... c t h w)` in [-1, 1]."""
    video = rearrange(frames, "... t h w c -> ... c t h w").contiguous()  # uint8 copy: cheap
    return video.float().div_(127.5).sub_(1.0)


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """float `(... c t h w)` in [-1, 1] -> uint8 `(... t h w c)`, rounded and clamped."""
    frames = rearrange(video.detach(), "... c t h w -> ... t h w c")
    return frames.add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


class RawClip(NamedTuple):
    """What the DataLoader yields (batched by its collate)."""

    frames: torch.Tensor  # (b t h w c) uint8
    actions: torch.Tensor  # (b t) int64 ground-truth actions


class Clip(NamedTuple):
    """What a model sees."""

    video: torch.Tensor  # (b c t h w) float in [-1, 1]
    actions: torch.Tensor  # (b t) int64 ground-truth actions; actions[:, t] leads from frame t to t+1


def to_clip(batch: RawClip) -> Clip:
    return Clip(to_video(batch.frames), batch.actions)


def clip_starts(firsts: np.ndarray, num_frames: int, stride: int = 1) -> np.ndarray:
    """Rows where a clip of `num_frames` fits inside one life.

    `firsts[i]` marks the first frame of a life (and of every episode). With `stride > 1`
    only starts at multiples of `stride` from their life's first frame are kept
    (non-overlapping clips for `stride == num_frames`).
    """
    n = len(firsts)
    if n < num_frames:
        return np.zeros(0, dtype=np.int64)
    life = np.cumsum(firsts)  # life id of every frame
    starts = np.arange(n - num_frames + 1)
    ok = life[starts] == life[starts + num_frames - 1]  # no life starts inside the clip
    if stride > 1:
        life_start = np.flatnonzero(firsts)[life - 1]  # first row of each frame's life
        ok &= (starts - life_start[starts]) % stride == 0
    return starts[ok]


class ClipDataset(Dataset):
    """uint8 clips starting at given rows of one packed split (memory-mapped, opened lazily per worker)."""

    def __init__(self, split_dir: str | Path, num_frames: int, starts: np.ndarray | None = None, stride: int = 1):
        self.split_dir = Path(split_dir)
        if not (self.split_dir / INDEX_FILE).exists():
            raise FileNotFoundError(f"no packed split at {self.split_dir}; run split.py first")
        self.num_frames = num_frames
        firsts = np.load(self.split_dir / "firsts.npy")
        self.starts = clip_starts(firsts, num_frames, stride) if starts is None else np.asarray(starts)
        if len(self.starts) == 0:
            raise ValueError(
                f"{self.split_dir}: no life is {num_frames} frames long; use fewer frames or longer episodes"
            )
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:  # opened in each worker: a memmap is never pickled with its data
            self._arrays = (
                np.load(self.split_dir / "frames.npy", mmap_mode="r"),
                np.load(self.split_dir / "actions.npy", mmap_mode="r"),
            )
        return self._arrays

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> RawClip:
        frames, actions = self._open()
        s = int(self.starts[i])
        window = slice(s, s + self.num_frames)
        return RawClip(torch.from_numpy(np.array(frames[window])), torch.from_numpy(actions[window].astype(np.int64)))


class VideoDataModule(L.LightningDataModule):
    """Random clips from the train split; a fixed, reproducible clip set for val and test.

    Args:
        root: data root given to `sample.py` / `split.py`.
        env_name: procgen game, case-insensitive (the data lives in `<root>/<game>/`).
        num_frames: frames per clip (Genie App. F: 16).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
        eval_clips: at most this many val/test clips, spread evenly over the split's
            non-overlapping clips (None: all of them).
    """

    def __init__(
        self,
        root: str = "./data",
        env_name: str = "Coinrun",
        num_frames: int = 16,
        batch_size: int = 16,
        num_workers: int = 4,
        eval_clips: int | None = 1024,
    ):
        super().__init__()
        if num_frames < 1 or batch_size < 1 or num_workers < 0:
            raise ValueError("num_frames and batch_size must be positive and num_workers non-negative")
        self.save_hyperparameters()
        self.dir = env_dir(root, env_name)
        self.num_frames, self.batch_size, self.num_workers = num_frames, batch_size, num_workers
        self.eval_clips = eval_clips
        self.datasets: dict[str, ClipDataset] = {}

    @property
    def metadata(self) -> dict:
        """What `sample.py` recorded: action names, frame shape, procgen version, ..."""
        path = self.dir / METADATA_FILE
        if not path.exists():
            raise FileNotFoundError(f"no recorded data at {self.dir}; run sample.py then split.py")
        return json.loads(path.read_text())

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")):
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    def _dataset(self, split: str) -> ClipDataset:
        path = self.dir / split
        if split == "train":
            return ClipDataset(path, self.num_frames)
        every = ClipDataset(path, self.num_frames, stride=self.num_frames)  # non-overlapping
        if self.eval_clips is None or len(every) <= self.eval_clips:
            return every
        keep = np.linspace(0, len(every) - 1, self.eval_clips).round().astype(np.int64)
        return ClipDataset(path, self.num_frames, starts=every.starts[keep])

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle,  # constant training batch shape; evaluation sees every clip
        )

    def on_after_batch_transfer(self, batch: RawClip, dataloader_idx: int) -> Clip:
        return to_clip(batch)  # on the training device: the uint8 -> float pass is nearly free there

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
