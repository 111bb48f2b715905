"""split.py: level-disjoint splits, packed arrays that match the episodes, and bad input."""

import json

import numpy as np
import pytest

import split as split_cli
from genie.episodes import EPISODE_DIR, episode_path, list_episodes, read_episode
from genie.splitting import INDEX_FILE, SPLITS, SplitError, assign_levels, split
from helpers.tiny import TINY, TINY_RATIOS


def _index(root, name):
    return json.loads((root / "coinrun" / name / INDEX_FILE).read_text())


def test_splits_are_disjoint_by_level_and_cover_all(tiny_root):
    seeds = {name: set(_index(tiny_root, name)["level_seeds"]) for name in SPLITS}
    assert all(seeds.values()), "every split got levels"
    assert seeds["train"].isdisjoint(seeds["val"]) and seeds["train"].isdisjoint(seeds["test"])
    assert seeds["val"].isdisjoint(seeds["test"])
    assert set().union(*seeds.values()) == set(range(TINY["num_envs"]))
    report = json.loads((tiny_root / "coinrun" / "splits.json").read_text())
    assert {k: set(v) for k, v in report["level_seeds"].items()} == seeds


def test_packed_arrays_are_the_episodes(tiny_root):
    env = tiny_root / "coinrun"
    for name in SPLITS:
        index = _index(tiny_root, name)
        frames = np.load(env / name / "frames.npy", mmap_mode="r")
        actions, firsts = np.load(env / name / "actions.npy"), np.load(env / name / "firsts.npy")
        rewards = np.load(env / name / "rewards.npy")
        assert len(frames) == len(actions) == len(firsts) == len(rewards) == index["num_frames"]
        for seed, start, n in zip(index["level_seeds"], index["starts"], index["lengths"]):
            ep = read_episode(episode_path(env / EPISODE_DIR, seed))
            rows = slice(start, start + n)
            np.testing.assert_array_equal(frames[rows], ep.frames)
            np.testing.assert_array_equal(actions[rows], ep.steps["action"])
            np.testing.assert_array_equal(rewards[rows], ep.steps["reward"])
            np.testing.assert_array_equal(firsts[rows], ep.steps["first"])
            assert firsts[start], "each episode starts a life in the packed arrays"


def test_rerun_is_idempotent(tiny_copy):
    env = tiny_copy / "coinrun"
    before = {p.relative_to(env): p.read_bytes() for p in env.rglob("*") if p.is_file()}
    split(tiny_copy, "coinrun", TINY_RATIOS, seed=0, progress=False)
    after = {p.relative_to(env): p.read_bytes() for p in env.rglob("*") if p.is_file()}
    assert after == before


def test_split_seed_changes_assignment_deterministically():
    levels = list(range(100))
    a = assign_levels(levels, (0.8, 0.1, 0.1), seed=0)
    assert a == assign_levels(levels[::-1], (0.8, 0.1, 0.1), seed=0)  # order of discovery is irrelevant
    assert a != assign_levels(levels, (0.8, 0.1, 0.1), seed=1)
    assert [len(a[s]) for s in SPLITS] == [80, 10, 10]
    tiny = assign_levels([7, 8, 9], (0.9, 0.05, 0.05), seed=0)
    assert [len(tiny[s]) for s in SPLITS] == [1, 1, 1]  # no requested split is left empty
    with pytest.raises(SplitError, match="record more levels"):
        assign_levels([1, 2], (0.9, 0.05, 0.05), seed=0)


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "garbage"])
def test_corrupt_episode_is_named_and_left_out(tiny_copy, capsys, damage):
    bad = episode_path(tiny_copy / "coinrun" / EPISODE_DIR, 3)
    if damage == "truncate":  # e.g. a disk that filled up
        with open(bad, "r+b") as f:
            f.truncate(bad.stat().st_size // 2)
    elif damage == "bitflip":  # silent media corruption: caught by the zstd checksum
        data = bytearray(bad.read_bytes())
        data[len(data) // 2] ^= 0x10
        bad.write_bytes(bytes(data))
    else:
        bad.write_bytes(b"this is not an episode")
    assert (
        split_cli.main(["--root", str(tiny_copy), "--train", "0.5", "--val", "0.25", "--test", "0.25", "--quiet"]) == 0
    )
    out = capsys.readouterr()
    assert bad.name in out.err and bad.name in out.out
    report = json.loads((tiny_copy / "coinrun" / "splits.json").read_text())
    assert list(report["left_out"]) == [bad.name]
    packed = set().union(*(_index(tiny_copy, s)["level_seeds"] for s in SPLITS))
    assert packed == set(range(TINY["num_envs"])) - {3}


def test_temporary_files_are_never_split(tiny_copy):
    episodes = tiny_copy / "coinrun" / EPISODE_DIR
    episode_path(episodes, 99).with_suffix(".zst.tmp").write_bytes(b"half")
    report = split(tiny_copy, "coinrun", TINY_RATIOS, seed=0, progress=False)
    assert 99 not in sum(report["level_seeds"].values(), []) and not report["left_out"]
    assert len(list_episodes(episodes)) == TINY["num_envs"]


def test_missing_or_empty_source_is_a_clear_error(tmp_path, capsys):
    assert split_cli.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sample.py" in err
    (tmp_path / "coinrun" / EPISODE_DIR).mkdir(parents=True)
    with pytest.raises(SplitError, match="no episode files"):
        split(tmp_path, "coinrun", progress=False)
