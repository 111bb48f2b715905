"""The control probe: scene shifts by phase correlation, CoinRun's effective action groups, and
each action held in the game and in a world model."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genie.control import (
    EFFECTIVE_GROUPS,
    describe,
    effective_group,
    game_probe,
    group_contingency,
    measure_shifts,
    mean_shifts,
    probe_grid,
    summary,
    world_probe,
)
from genie.data import to_frames
from genie.motion import phase_shift

REPO = Path(__file__).resolve().parents[1]

COINRUN = ["LEFT+DOWN", "LEFT", "LEFT+UP", "DOWN", "NOOP", "UP", "RIGHT+DOWN", "RIGHT", "RIGHT+UP",
           "D", "A", "W", "S", "Q", "E"]  # fmt: skip


def _smooth_images(n: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.nn.functional.avg_pool2d(torch.rand(n, 3, 64, 64), 3, 1, 1) * 2 - 1


def _fourier_shift(x: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """`x` with its content moved right by dx and down by dy pixels (periodic, exact)."""
    ky = torch.fft.fftfreq(x.shape[-2])[:, None]
    kx = torch.fft.fftfreq(x.shape[-1])[None, :]
    return torch.fft.ifft2(torch.fft.fft2(x) * torch.exp(-2j * torch.pi * (kx * dx + ky * dy))).real


@pytest.mark.parametrize("dx, dy", [(3, -2), (0, 0), (-5, 7)])
def test_phase_shift_finds_whole_pixel_moves_with_their_sign(dx, dy):
    a = _smooth_images(4)
    b = torch.roll(a, shifts=(dy, dx), dims=(2, 3))  # content moves down by dy, right by dx
    s = phase_shift(a, b)
    torch.testing.assert_close(s.dx, torch.full((4,), float(dx)), atol=0.05, rtol=0)
    torch.testing.assert_close(s.dy, torch.full((4,), float(dy)), atol=0.05, rtol=0)
    assert (s.peak > 0.5).all()


@pytest.mark.parametrize("dx, dy", [(0.5, 0.0), (0.3, -1.25), (-0.7, 0.2)])
def test_phase_shift_finds_sub_pixel_moves(dx, dy):
    a = _smooth_images(3)
    s = phase_shift(a, _fourier_shift(a, dx, dy))
    assert abs(float(s.dx.mean()) - dx) < 0.05 and abs(float(s.dy.mean()) - dy) < 0.05


def test_phase_shift_refuses_frames_of_different_shapes():
    with pytest.raises(ValueError, match="different shapes"):
        phase_shift(torch.zeros(2, 3, 64, 64), torch.zeros(2, 3, 32, 32))


def test_coinrun_buttons_fall_into_six_effective_groups():
    groups = [EFFECTIVE_GROUPS[effective_group(n)] for n in COINRUN]
    assert groups == ["left", "left", "left+up", "none", "none", "up", "right", "right", "right+up",
                      "none", "none", "none", "none", "none", "none"]  # fmt: skip
    table = np.arange(2 * 15).reshape(2, 15)
    grouped = group_contingency(table, COINRUN)
    assert grouped.shape == (2, 6) and grouped.sum() == table.sum()
    assert grouped[0, EFFECTIVE_GROUPS.index("left")] == 0 + 1


def test_mean_shifts_per_action_skip_invalid_pairs():
    start = _smooth_images(2)  # 2 levels
    # action 0 moves the content 1 px right per frame, action 1 2 px up per frame
    a0 = torch.stack([torch.roll(start, t, dims=3) for t in range(5)], dim=1)
    a1 = torch.stack([torch.roll(start, -2 * t, dims=2) for t in range(5)], dim=1)
    frames = torch.stack([a0, a1])  # (A L T+1 c H W)
    valid = torch.ones(2, 2, 4, dtype=torch.bool)
    dx, dy = mean_shifts(frames, valid)
    np.testing.assert_allclose(dx, [1, 0], atol=0.05)
    np.testing.assert_allclose(dy, [0, -2], atol=0.05)
    frames[0, :, 2] = frames[0, :, 1]  # a restart: no motion into frame 2, marked invalid
    valid[0, :, 1] = False
    dx, _ = mean_shifts(frames, valid)
    np.testing.assert_allclose(dx[0], (1 + 2 + 1) / 3, atol=0.05)  # only the pairs marked valid


def test_shifts_step_by_step_show_where_the_motion_stops():
    start = _smooth_images(2)
    # action 0 moves the content 1 px right per frame for two frames, then stands still
    moving = torch.stack([torch.roll(start, min(t, 2), dims=3) for t in range(5)], dim=1)
    frames = torch.stack([moving, moving.clone()])  # (A L T+1 c H W)
    valid = torch.ones(2, 2, 4, dtype=torch.bool)
    valid[1, :, 3] = False  # no level counts action 1's last step
    shifts = measure_shifts(frames, valid)
    np.testing.assert_allclose(shifts.dx_by_step[0], [1, 1, 0, 0], atol=0.05)
    np.testing.assert_allclose(shifts.dx_by_step[1, :3], [1, 1, 0], atol=0.05)
    assert np.isnan(shifts.dx_by_step[1, 3])
    np.testing.assert_allclose(shifts.dx, [0.5, 2 / 3], atol=0.05)  # the overall mean hides the stall
    out = summary(shifts.dx, shifts.dy, ["a", "b"], shifts)
    assert out["dx_by_step"][1][3] is None and out["dy_by_step"][0] == [0.0] * 4
    json.dumps(out, allow_nan=False)  # a report stays valid JSON


class RollingWorld:
    """A stand-in world whose action 0 moves the scene left and action 1 moves it down."""

    num_actions = 2

    def reset(self, image: torch.Tensor) -> torch.Tensor:
        self.frame = image
        return image

    def step(self, action: int) -> torch.Tensor:
        self.frame = torch.roll(self.frame, shifts=(1, 0) if action else (0, -1), dims=(2, 3))
        return self.frame


def test_world_probe_holds_each_action_and_measures_the_spread():
    summary, video = world_probe(RollingWorld(), _smooth_images(3), num_frames=6)
    assert video.shape == (2, 3, 7, 3, 64, 64)
    np.testing.assert_allclose(summary["dx"], [-1, 0], atol=0.05)
    np.testing.assert_allclose(summary["dy"], [0, 1], atol=0.05)
    np.testing.assert_allclose(summary["dx_by_step"], [[-1] * 6, [0] * 6], atol=0.05)
    assert abs(summary["spread_x"] - 1) < 0.1 and abs(summary["spread_y"] - 1) < 0.1
    grid = probe_grid(video, levels=2)
    assert grid.shape == (2 * 2 * 64, 7 * 64, 3) and grid.dtype == np.uint8
    first = to_frames(video[0, 0].transpose(0, 1)).numpy()  # (T+1 H W c): action 0 from level 0
    np.testing.assert_array_equal(grid[:64, 64:128], first[1])  # row: action 0, level 0; column: frame 1
    np.testing.assert_array_equal(grid[3 * 64 :, 6 * 64 :], to_frames(video[1, 1].transpose(0, 1)).numpy()[6])


def test_in_the_game_right_scrolls_the_scene_left_and_noop_does_not():
    summary, starts = game_probe("coinrun", [100000, 100001], COINRUN, num_frames=12)
    assert starts.shape == (2, 64, 64, 3) and starts.dtype == np.uint8
    dx = dict(zip(COINRUN, summary["dx"]))
    assert dx["RIGHT"] < -0.2  # the camera follows the agent running right
    assert abs(dx["NOOP"]) < 0.1
    assert summary["spread_x"] > 0.2


def test_the_game_probe_steps_as_the_data_was_recorded():
    from genie.record import hold_action

    every, _ = hold_action("coinrun", 100000, COINRUN.index("RIGHT"), num_frames=12)
    skipped, _ = hold_action("coinrun", 100000, COINRUN.index("RIGHT"), num_frames=4, frame_skip=3)
    np.testing.assert_array_equal(skipped, every[::3])
    fine, _ = game_probe("coinrun", [100000], COINRUN, num_frames=8)
    coarse, _ = game_probe("coinrun", [100000], COINRUN, num_frames=8, frame_skip=4)
    assert coarse["spread_x"] > 2 * fine["spread_x"]  # a step of 4 frames moves the scene further


def test_a_warmup_starts_every_held_action_from_the_same_frame_inside_the_level():
    from genie.record import hold_action

    start, _ = hold_action("coinrun", 100000, COINRUN.index("NOOP"), num_frames=2)
    right, _ = hold_action("coinrun", 100000, COINRUN.index("RIGHT"), num_frames=2, frame_skip=4, warmup=6)
    left, _ = hold_action("coinrun", 100000, COINRUN.index("LEFT"), num_frames=2, frame_skip=4, warmup=6)
    np.testing.assert_array_equal(right[0], left[0])  # the warm-up is the level's, not the action's
    assert not np.array_equal(right[0], start[0])  # 24 game frames of random buttons moved something
    assert not np.array_equal(right[1:], left[1:])


def test_compare_reports_tabulates_margins_and_refuses_other_files(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_reports", REPO / "scripts" / "compare_reports.py")
    compare_reports = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_reports)
    report = {"action_source": "recorded",
              "dynamics": {"teacher_forced_psnr": 25.0, "copy_last_frame_tokens_psnr": 23.5,
                           "rollout_psnr_by_horizon": [24.0, 22.0],
                           "copy_first_frame_tokens_psnr_by_horizon": [23.0, 22.5]},
              "delta_psnr_t4": {"genie": 1.2}, "lam": {"nmi_true_actions": 0.3},
              "control": {"spread_x_ratio": 0.4, "spread_y_ratio": 0.7}}  # fmt: skip
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_text(json.dumps(report))
    assert compare_reports.main([str(tmp_path / "a"), "--markdown", str(tmp_path / "t.md")]) == 0
    line = (tmp_path / "t.md").read_text().splitlines()[2]
    assert line == "| a | recorded | 25.0 | 23.5 | 1.5 | 22.0 | 22.5 | -0.5 | 1.2 | 0.3 | - | - | 0.4 | 0.7 | - | - | - |"
    report["dynamics"]["teacher_forced_tokens"] = {"changed_share": 0.3, "changed_accuracy": 0.1, "changed_copied": 0.8}
    (tmp_path / "a" / "report.json").write_text(json.dumps(report))
    assert compare_reports.main([str(tmp_path / "a"), "--markdown", str(tmp_path / "t.md")]) == 0
    assert (tmp_path / "t.md").read_text().splitlines()[2].endswith("| 0.4 | 0.7 | 0.3 | 0.1 | 0.8 |")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "report.json").write_text("{}")
    assert compare_reports.main([str(tmp_path / "b")]) == 2
    assert "not an evaluate.py report" in capsys.readouterr().err


@pytest.mark.parametrize(
    "dx, dy, words",
    [(-1.0, 0.0, "right"), (0.8, 0.0, "left"), (0.0, 0.5, "up"), (0.0, -0.5, "down"),
     (-0.4, 0.9, "right + up"), (0.1, -0.2, "unclear"), (0.0, 0.0, "unclear")],
)  # fmt: skip
def test_describe_reads_the_scene_shift_as_the_agent_s_motion(dx, dy, words):
    assert describe(dx, dy) == words  # the camera follows the agent: the scene moves the other way


@pytest.mark.parametrize("n", [2, 4, 9, 10, 11])
def test_latent_motion_reads_each_frame_pair_once_in_order(n):
    """scripts/data_motion.py --checkpoint: one latent action per consecutive pair, each from the
    LAM window (of its clip length, one frame of overlap) that holds the pair."""
    from genie.action import LatentAction
    from genie.data import to_video
    from helpers.stage2 import load_script
    from helpers.worlds import LAM_ARGS

    latent_actions = load_script("scripts/data_motion.py", "data_motion_script").latent_actions
    torch.manual_seed(0)
    lam = LatentAction(**LAM_ARGS).eval()  # clips of 4 frames
    frames = np.random.default_rng(n).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    got = latent_actions(lam, frames)
    assert got.shape == (n - 1,)
    with torch.no_grad():  # each window alone
        for start in range(0, n - 1, lam.max_frames - 1):
            window = to_video(torch.from_numpy(frames[start : start + lam.max_frames]))[None]
            expected = lam.encode(window)[0].actions[0].numpy()
            assert (got[start : start + len(expected)] == expected).all()
    assert len(set(got.tolist())) > 1 or n <= 4  # random frames: not one constant answer


def test_data_motion_whole_shifts_per_group_after_a_still_step_or_not():
    """scripts/data_motion.py --whole: per group and by what the step before did, the mean, the most
    common dx and the share with no horizontal shift; the share at the limit over all pairs."""
    from helpers.stage2 import load_script

    whole_shifts = load_script("scripts/data_motion.py", "data_motion_script").whole_shifts
    dx = np.array([0, 0, -4, -8, 3, 0])
    dy = np.array([0, 8, 0, 0, 0, -2])
    still = np.array([True, True, True, False, False, False])
    group = np.array([0, 0, 0, 0, 1, 1])
    out = whole_shifts(dx, dy, still, group, ["right", "left", "none"], limit=8)
    assert out["share_at_limit_x"] == round(1 / 6, 3) and out["share_at_limit_y"] == round(1 / 6, 3)
    right = out["groups"]["right"]
    assert right["after_still"] == {"pairs": 3, "dx": round(-4 / 3, 2), "dy": round(8 / 3, 2), "most_common_dx": 0,
                                    "share_dx_0": round(2 / 3, 2)}  # fmt: skip
    assert right["after_moving"]["most_common_dx"] == -8 and right["after_moving"]["pairs"] == 1
    assert "after_still" not in out["groups"]["left"] and "none" not in out["groups"]
