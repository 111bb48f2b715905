"""sample.py: what it records, determinism, resuming, and bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sample as sample_cli
from genie.episodes import EPISODE_DIR, episode_path, list_episodes, read_episode
from genie.record import record_level, sample
from helpers.tiny import TINY

REPO = Path(__file__).resolve().parents[1]


def _episode_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in list_episodes(root / "coinrun" / EPISODE_DIR)}


def test_records_appendix_f_episodes(tiny_root):
    meta = json.loads((tiny_root / "coinrun" / "metadata.json").read_text())
    assert meta["env_name"] == "coinrun" and meta["distribution_mode"] == "hard"
    assert meta["num_actions"] == 15 and len(meta["action_names"]) == 15 and "NOOP" in meta["action_names"]
    assert meta["num_episodes"] == TINY["num_envs"] and meta["num_frames"] == TINY["num_envs"] * TINY["timeout"]
    assert meta["frame_shape"] == [64, 64, 3] and meta["procgen_version"] == "0.10.7"
    paths = list_episodes(tiny_root / "coinrun" / EPISODE_DIR)
    assert [read_episode(p).level_seed for p in paths] == list(range(TINY["num_envs"]))
    restarts = 0
    for p in paths:
        ep = read_episode(p)
        assert ep.frames.shape == (TINY["timeout"], 64, 64, 3) and ep.frames.dtype == np.uint8
        assert ep.steps["first"][0] and ep.steps["action"].max() < 15
        assert ep.frames.std() > 0  # real pictures, not blank buffers
        restarts += int(ep.steps["first"][1:].sum())
    assert restarts > 0, "the tiny dataset should contain deaths/successes (CoinRun restarts)"
    # A uniform random policy over all 15 actions: every action shows up.
    all_actions = np.concatenate([read_episode(p).steps["action"] for p in paths])
    assert set(all_actions.tolist()) == set(range(15))


def test_same_arguments_give_identical_bytes(tiny_root, tmp_path):
    # One worker instead of two: the bytes must not depend on scheduling.
    sample(tmp_path, workers=1, progress=False, command="tests", **TINY)
    assert _episode_bytes(tmp_path) == _episode_bytes(tiny_root)
    assert (tmp_path / "coinrun" / "metadata.json").read_bytes() == (
        tiny_root / "coinrun" / "metadata.json"
    ).read_bytes()


def test_policy_seed_changes_the_data(tmp_path):
    sample(tmp_path / "a", env_name="coinrun", num_envs=1, timeout=50, seed=1, workers=1, progress=False)
    sample(tmp_path / "b", env_name="coinrun", num_envs=1, timeout=50, seed=2, workers=1, progress=False)
    a, b = (read_episode(list_episodes(tmp_path / r / "coinrun" / EPISODE_DIR)[0]) for r in "ab")
    assert not np.array_equal(a.steps["action"], b.steps["action"])


def test_resume_skips_finished_and_redoes_partial(tiny_root, tiny_copy):
    episodes = tiny_copy / "coinrun" / EPISODE_DIR
    episode_path(episodes, 2).unlink()
    half = episode_path(episodes, 5).with_suffix(".zst.tmp")  # an interrupted write
    episode_path(episodes, 5).rename(half)
    with open(half, "r+b") as f:
        f.truncate(1000)
    before = {p.name: p.stat().st_mtime_ns for p in list_episodes(episodes)}
    report = sample(tiny_copy, workers=2, progress=False, command="tests", **TINY)
    assert (report.recorded, report.skipped) == (2, TINY["num_envs"] - 2)
    assert not list(episodes.glob("*.tmp"))
    assert _episode_bytes(tiny_copy) == _episode_bytes(tiny_root)
    for name, mtime in before.items():  # finished episodes were not rewritten
        assert (episodes / name).stat().st_mtime_ns == mtime


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 2), (signal.SIGKILL, 1)])
def test_resume_after_real_interruption(tmp_path, sig, workers):
    # 240 levels x 1000 steps: seconds of recording even at ~20k frames/s, so the signal lands mid-run
    # (with 48, a loaded machine once let the run finish before the signal was handled)
    args = ["--num_envs", "240", "--timeout", "1000", "--root", str(tmp_path), "--workers", str(workers), "--quiet"]
    proc = subprocess.Popen([sys.executable, "sample.py", *args], cwd=REPO, stderr=subprocess.PIPE, text=True)
    episodes = tmp_path / "coinrun" / EPISODE_DIR
    deadline = time.monotonic() + 60
    while not episodes.exists() or len(list_episodes(episodes)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "sample.py ended before it could be interrupted"
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    done = len(list_episodes(episodes))
    assert 2 <= done < 240, "the interruption should land mid-run"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "resume" in proc.stderr.read()
    for p in list_episodes(episodes):  # whatever has the final name is whole
        read_episode(p)
    subprocess.run([sys.executable, "sample.py", *args], cwd=REPO, check=True, capture_output=True)
    sample(tmp_path / "clean", env_name="coinrun", num_envs=240, timeout=1000, workers=2, progress=False)
    assert _episode_bytes(tmp_path) == _episode_bytes(tmp_path / "clean")


def test_refuses_to_mix_settings_in_one_root(tiny_copy):
    with pytest.raises(ValueError, match="timeout=150"):
        sample(tiny_copy, env_name="coinrun", num_envs=2, timeout=99, workers=1, progress=False)


def _cli_error(argv, capsys) -> str:
    assert sample_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_env_lists_valid_games(capsys, tmp_path):
    err = _cli_error(["--env_name", "Coinrunner", "--root", str(tmp_path)], capsys)
    assert "Coinrunner" in err and "coinrun" in err and "starpilot" in err


@pytest.mark.parametrize("flag, value, words", [("--num_envs", "0", "num_envs"), ("--timeout", "-5", "timeout")])
def test_bad_numbers(capsys, tmp_path, flag, value, words):
    err = _cli_error([flag, value, "--root", str(tmp_path)], capsys)
    assert words in err and value in err
    assert not (tmp_path / "coinrun").exists()  # nothing was created


def test_unwritable_root(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    err = _cli_error(["--num_envs", "1", "--root", str(blocker / "data")], capsys)
    assert str(blocker) in err
    if os.geteuid() != 0:  # root ignores permissions: only checkable as a normal user
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _cli_error(["--num_envs", "1", "--root", str(ro)], capsys)


def test_frame_skip_records_every_nth_game_frame(tmp_path):
    # The same random draws played one game frame per step, each held for 3 steps, visit exactly
    # the frames that 3 game frames per step keep: every third one, rewards summed per step and a
    # restart flagged at the first kept frame after it.
    fine = record_level("coinrun", 2, 300, "hard", seed=0, action_repeat=3).steps
    skip = record_level("coinrun", 2, 100, "hard", seed=0, frame_skip=3).steps
    np.testing.assert_array_equal(skip["frame"], fine["frame"][::3])
    np.testing.assert_array_equal(skip["action"], fine["action"][::3])
    np.testing.assert_allclose(skip["reward"], fine["reward"].reshape(100, 3).sum(1))
    restarts = [fine["first"][0]] + [fine["first"][3 * t - 2 : 3 * t + 1].any() for t in range(1, 100)]
    np.testing.assert_array_equal(skip["first"], restarts)
    assert skip["first"][1:].any()  # level 2 restarts at game frame 259, between two kept frames

    sample(tmp_path, env_name="coinrun", num_envs=1, timeout=20, workers=1, progress=False, frame_skip=4)
    meta = json.loads((tmp_path / "coinrun" / "metadata.json").read_text())
    assert meta["frame_skip"] == 4 and "4 game frames" in meta["policy"]
    with pytest.raises(ValueError, match="frame_skip=4"):  # one step size per data root
        sample(tmp_path, env_name="coinrun", num_envs=2, timeout=20, workers=1, progress=False)
    with pytest.raises(ValueError, match="--frame_skip"):
        sample(tmp_path / "bad", env_name="coinrun", num_envs=1, timeout=20, workers=1, progress=False, frame_skip=0)


def test_sticky_policy_holds_each_action_and_says_so(tmp_path):
    sample(tmp_path, env_name="coinrun", num_envs=2, timeout=50, workers=1, progress=False, action_repeat=8)
    meta = json.loads((tmp_path / "coinrun" / "metadata.json").read_text())
    assert meta["action_repeat"] == 8 and "held for 8 steps" in meta["policy"]
    for p in list_episodes(tmp_path / "coinrun" / EPISODE_DIR):
        actions = read_episode(p).steps["action"]
        blocks = [actions[i : i + 8] for i in range(0, 50, 8)]
        assert all((b == b[0]).all() for b in blocks)  # held for 8 steps (the last block is cut short)
        assert len({int(b[0]) for b in blocks}) > 1  # and redrawn
    with pytest.raises(ValueError, match="action_repeat=8"):  # one policy per data root
        sample(tmp_path, env_name="coinrun", num_envs=2, timeout=50, workers=1, progress=False)
    with pytest.raises(ValueError, match="--action_repeat"):
        sample(tmp_path / "bad", env_name="coinrun", num_envs=1, timeout=50, workers=1, progress=False, action_repeat=0)
