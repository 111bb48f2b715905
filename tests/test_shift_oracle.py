"""scripts/shift_oracle.py: the whole-pixel shift of a frame closest to the next one."""

import pytest
import torch

from genie.motion import move
from helpers.stage2 import load_script


def shift_frames(frames: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Every frame of `frames (n c H W)` moved by the same (dx, dy), as the oracle tries them."""
    return move(frames, torch.tensor([[dx, dy]]).expand(len(frames), 2))


def test_shift_frames_moves_the_content_and_repeats_the_edges():
    frames = torch.arange(16.0).view(1, 1, 4, 4)
    moved = shift_frames(frames, 1, -1)
    # content moved right by one and up by one: row r, column c shows frames[r + 1, c - 1]
    assert torch.equal(moved[0, 0, :3, 1:], frames[0, 0, 1:, :3])
    assert torch.equal(moved[0, 0, :3, 0], frames[0, 0, 1:, 0])  # the left edge repeated
    assert torch.equal(moved[0, 0, 3], moved[0, 0, 2])  # the bottom edge repeated


def test_best_shift_finds_the_scroll_of_each_pair_and_keeps_a_still_frame():
    oracle = load_script("scripts/shift_oracle.py", "shift_oracle")
    g = torch.Generator().manual_seed(0)
    before = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    after = torch.stack([
        shift_frames(before[:1], -3, 0)[0],  # the scene scrolled left: the agent ran right
        shift_frames(before[1:2], 2, 4)[0],
        before[2],  # nothing moved
    ])  # fmt: skip
    moved, shifts = oracle.best_shift(before, after, max_shift=4)
    assert shifts[:, 0, 0].tolist() == [[-3, 0], [2, 4], [0, 0]]
    assert torch.equal(moved, after)
    _, limited = oracle.best_shift(before[1:2], after[1:2], max_shift=1)  # out of range: the closest in range
    assert limited.abs().max() <= 1


def test_best_shift_per_region_moves_each_tile_on_its_own():
    oracle = load_script("scripts/shift_oracle.py", "shift_oracle")
    g = torch.Generator().manual_seed(1)
    before = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    left, right = shift_frames(before, -2, 0), shift_frames(before, 3, 1)
    after = torch.cat([left[..., :16], right[..., 16:]], dim=-1)  # the two halves moved differently
    moved, shifts = oracle.best_shift(before, after, max_shift=4, regions=2)
    assert shifts.shape == (1, 2, 2, 2)
    assert shifts[0, :, 0].tolist() == [[-2, 0], [-2, 0]] and shifts[0, :, 1].tolist() == [[3, 1], [3, 1]]
    assert torch.equal(moved, after)
    whole, one = oracle.best_shift(before, after, max_shift=4)  # one shift for the frame cannot match both
    assert (whole - after).square().mean() > 0.01 and one.shape == (1, 1, 1, 2)
    with pytest.raises(ValueError, match="tile"):
        oracle.best_shift(before, after, max_shift=4, regions=3)


def test_shift_errors_count_right_far_and_wrong_way_picks_per_axis():
    oracle = load_script("scripts/shift_oracle.py", "shift_oracle_errors")
    true = torch.tensor([[3, 0], [3, -2], [-4, 0], [0, 5]])
    pick = torch.tensor([[3, 1], [-1, -2], [-1, 0], [0, 5]])
    errors = oracle.shift_errors(pick, true)
    assert errors["accuracy"] == [0.5, 0.75]  # dx right in rows 0 and 3; dy wrong in row 0 only
    assert errors["far"] == [0.5, 0.0]  # dx off by 4 (row 1) and 3 (row 2)
    assert errors["wrong_way"] == [round(1 / 3, 3), 0.0]  # of the 3 rows moving in dx, row 1 turned back
