"""genie.data: clips, their ranges, episode/restart boundaries, and the Lightning wiring."""

import lightning as L
import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser

from genie.data import Clip, ClipDataset, VideoDataModule, clip_starts, to_clip, to_frames, to_video
from helpers.tiny import TINY

T = 16


def _dm(root, **kw) -> VideoDataModule:
    return VideoDataModule(
        root=str(root), env_name="Coinrun", num_frames=T, **{"batch_size": 4, "num_workers": 0, **kw}
    )


def test_clip_starts_respect_lives():
    firsts = np.zeros(12, dtype=bool)
    firsts[[0, 5, 9]] = True  # lives: rows 0-4, 5-8, 9-11
    np.testing.assert_array_equal(clip_starts(firsts, 3), [0, 1, 2, 5, 6, 9])
    np.testing.assert_array_equal(clip_starts(firsts, 2, stride=2), [0, 2, 5, 7, 9])
    np.testing.assert_array_equal(clip_starts(firsts, 5), [0])
    assert len(clip_starts(firsts, 6)) == 0


def test_uint8_float_round_trip_is_exact():
    frames = torch.arange(256, dtype=torch.uint8).repeat(3 * 4 * 2).reshape(2, 4, 16, 16, 3)  # (t h w c) per video
    video = to_video(frames)
    assert video.shape == (2, 3, 4, 16, 16) and video.dtype == torch.float32 and video.is_contiguous()
    assert video.min() == -1 and video.max() == 1
    assert torch.equal(to_frames(video), frames)
    assert torch.equal(to_frames(video.clamp(-3, 3) * 2), to_frames(video * 2))  # out-of-range input is clamped


def test_batches_have_the_documented_shapes_and_values(tiny_root):
    dm = _dm(tiny_root)
    raw = next(iter(dm.train_dataloader()))
    assert raw.frames.dtype == torch.uint8 and raw.frames.shape == (4, T, 64, 64, 3)
    clip = dm.on_after_batch_transfer(raw, 0)
    assert isinstance(clip, Clip)
    assert clip.video.shape == (4, 3, T, 64, 64) and clip.video.dtype == torch.float32
    assert clip.video.min() >= -1 and clip.video.max() <= 1 and clip.video.std() > 0.05
    assert clip.actions.shape == (4, T) and clip.actions.dtype == torch.int64
    assert 0 <= clip.actions.min() and clip.actions.max() < 15


def test_clips_are_slices_of_one_life(tiny_root):
    split_dir = tiny_root / "coinrun" / "train"
    firsts = np.load(split_dir / "firsts.npy")
    frames, actions = np.load(split_dir / "frames.npy"), np.load(split_dir / "actions.npy")
    assert firsts[1:].sum() > 0, "precondition: restarts or episode boundaries inside the split"
    ds = ClipDataset(split_dir, T)
    assert len(ds) > 0
    for i in range(len(ds)):
        s = int(ds.starts[i])
        assert not firsts[s + 1 : s + T].any(), f"clip at row {s} crosses a restart"
    # and every row where a clip fits inside one life is used
    every = [s for s in range(len(firsts) - T + 1) if not firsts[s + 1 : s + T].any()]
    np.testing.assert_array_equal(ds.starts, every)
    s = int(ds.starts[len(ds) // 2])
    item = ds[len(ds) // 2]
    np.testing.assert_array_equal(item.frames.numpy(), frames[s : s + T])
    np.testing.assert_array_equal(item.actions.numpy(), actions[s : s + T])


def test_eval_clips_are_fixed_non_overlapping_and_capped(tiny_root):
    a, b = _dm(tiny_root), _dm(tiny_root, num_workers=2)
    batches_a = [to_clip(x) for x in a.val_dataloader()]
    batches_b = [to_clip(x) for x in b.val_dataloader()]  # worker processes: same clips, same order
    assert len(batches_a) == len(batches_b) > 0
    for x, y in zip(batches_a, batches_b):
        assert torch.equal(x.video, y.video) and torch.equal(x.actions, y.actions)
    a.setup("fit")
    starts = a.datasets["val"].starts
    assert np.all(np.diff(starts) >= T)  # non-overlapping
    capped = _dm(tiny_root, eval_clips=3)
    capped.setup("test")
    assert len(capped.datasets["test"]) == 3 and set(capped.datasets["test"].starts) <= set(_test_starts(tiny_root))


def _test_starts(root):
    dm = _dm(root, eval_clips=None)
    dm.setup("test")
    return dm.datasets["test"].starts


def test_train_loader_works_with_workers(tiny_root):
    dm = _dm(tiny_root, num_workers=2)
    seen = [to_clip(b).video.shape for _, b in zip(range(6), dm.train_dataloader())]
    assert seen == [(4, 3, T, 64, 64)] * 6


def test_missing_data_is_a_clear_error(tmp_path, tiny_root):
    with pytest.raises(FileNotFoundError, match="split.py"):
        _dm(tmp_path).train_dataloader()
    with pytest.raises(ValueError, match="no life is 999 frames long"):
        VideoDataModule(root=str(tiny_root), num_frames=999, num_workers=0).train_dataloader()
    with pytest.raises(ValueError, match="unknown procgen game"):
        VideoDataModule(root=str(tiny_root), env_name="pong")


def test_configurable_from_yaml(tiny_root):
    parser = ArgumentParser()
    parser.add_class_arguments(VideoDataModule, "data")
    yaml = f"data:\n  root: {tiny_root}\n  env_name: Coinrun\n  num_frames: 8\n  batch_size: 2\n  num_workers: 0\n"
    dm = parser.instantiate(parser.parse_string(yaml)).data
    assert isinstance(dm, VideoDataModule) and dm.metadata["num_actions"] == 15  # read from the data root
    batch = next(iter(dm.train_dataloader()))  # the YAML's clip length and batch size reach the batches
    assert batch.frames.shape == (2, 8, 64, 64, 3) and batch.actions.shape == (2, 8)


class _Probe(L.LightningModule):
    """Records what a training step receives."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[Clip] = []

    def training_step(self, batch, _):
        self.seen.append(batch)
        return (batch.video.mean() - self.w) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_steps_receive_float_clips(tiny_root):
    probe = _Probe()
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(probe, datamodule=_dm(tiny_root, num_workers=1))
    assert len(probe.seen) == 2
    for clip in probe.seen:
        assert isinstance(clip, Clip) and clip.video.dtype == torch.float32 and clip.video.shape == (4, 3, T, 64, 64)
    assert TINY["timeout"] >= T
