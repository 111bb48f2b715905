"""Record Procgen episodes with a random agent, as in Genie Appendix F.

Appendix F (CoinRun case study): levels are generated from a range of level seeds in
"hard" mode, and a uniformly random policy acts at every step (a fresh action each step,
no action repeats). `action_repeat=k` holds each random action for k steps instead (a
"sticky" random policy, an option): CoinRun has momentum, so a fresh action every step
rarely moves the scene, and held actions show what each one does. `frame_skip=n` (an option,
as in Atari agents since DQN) repeats each recorded step's action for n game frames and keeps
the last: a step then moves the scene n times as far (CoinRun scrolls about half a pixel per
frame at full speed, less than a token's worth of change). We record one episode per
level seed: `timeout` steps of that level, restarting it on death or success (procgen does so
itself when `num_levels=1`), and keep the restart flags so that training clips never span a
restart.

Everything is seeded by `(seed, level_seed)` alone, so the bytes of an episode do not
depend on how many workers recorded it or in which order, and a run resumed after an
interruption produces exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genie.episodes import (
    EPISODE_DIR,
    METADATA_FILE,
    Episode,
    canonical_env_name,
    env_dir,
    episode_path,
    level_seed_of,
    list_episodes,
    step_dtype,
    write_episode,
)  # fmt: skip

FORMAT_VERSION = 1
PROCGEN_ACTIONS = 15  # every procgen game's action space: 15 button combos (CoinRun's among them)
# A resumed run must agree with the data already on disk in everything that shapes an episode.
_MUST_MATCH = ("format", "env_name", "distribution_mode", "timeout", "seed", "action_repeat", "frame_skip")


def procgen_env_class():
    """procgen's `ProcgenGym3Env`, imported without gym's banner.

    Imported on first use: reading data never needs procgen. Importing it imports `gym`, whose
    banner about numpy 2 does not concern us (we use ProcgenGym3Env, not the gym wrapper).
    """
    with contextlib.redirect_stderr(io.StringIO()):
        from procgen import ProcgenGym3Env
    return ProcgenGym3Env


def make_env(env_name: str, level_seed: int, distribution_mode: str, seed: int):
    """A single procgen env pinned to one level (`num_levels=1`), stepped in this thread."""
    env = procgen_env_class()(
        num=1,
        env_name=env_name,
        start_level=level_seed,
        num_levels=1,  # the level restarts itself on death/success
        distribution_mode=distribution_mode,
        num_threads=0,  # step in the calling thread: ~2.5x faster than procgen's 1-thread pool here
        rand_seed=(seed * 1_000_003 + level_seed) % 2**31,
    )
    # gym3 copies every observation unless `reuse_arrays`, which procgen does not expose; we copy
    # each frame into the episode buffer ourselves, so skip gym3's copy (gym3 is pinned).
    env._reuse_arrays = True
    return env


def record_level(
    env_name: str,
    level_seed: int,
    timeout: int,
    distribution_mode: str,
    seed: int,
    out: np.ndarray | None = None,
    action_repeat: int = 1,
    frame_skip: int = 1,
) -> Episode:
    """Play `timeout` uniformly random steps of one level and return what was seen, each random
    action held for `action_repeat` steps of `frame_skip` game frames each.

    `out`, a reusable `(timeout,)` record buffer, spares a worker a fresh 12 MB allocation
    (and its page faults) for every level; the returned episode then views that buffer.
    """
    env = make_env(env_name, level_seed, distribution_mode, seed)
    num_actions = env.ac_space.eltype.n  # CoinRun: 15 button combos
    rng = np.random.default_rng([seed, level_seed])
    steps = np.zeros(timeout, dtype=step_dtype(env.ob_space["rgb"].shape)) if out is None else out
    draws = rng.integers(0, num_actions, size=-(-timeout // action_repeat))  # ceil(timeout / k) actions
    steps["action"] = np.repeat(draws, action_repeat)[:timeout]
    steps["reward"], steps["first"] = 0, False
    act_in = steps["action"].astype(np.int32).reshape(timeout, 1)  # what env.act takes, converted once
    frame, reward, first = steps["frame"], steps["reward"], steps["first"]  # views into `steps`
    restarted = False  # a new life began during the skipped frames before this step's frame
    for t in range(timeout):
        rew, obs, is_first = env.observe()  # the reward is for the previous action
        frame[t] = obs["rgb"][0]
        first[t] = is_first[0] or restarted
        if t:
            reward[t - 1] += rew[0]
        env.act(act_in[t])
        restarted = False
        for _ in range(frame_skip - 1):
            rew, _, is_first = env.observe()
            reward[t] += rew[0]
            restarted |= bool(is_first[0])
            env.act(act_in[t])
    reward[-1] += env.observe()[0][0]
    if env.get_info()[0]["level_seed"] != level_seed:  # num_levels=1 must pin the level
        raise RuntimeError(f"procgen played level {env.get_info()[0]['level_seed']} instead of {level_seed}")
    return Episode(steps, level_seed)


def hold_action(
    env_name: str, level_seed: int, action: int, num_frames: int, distribution_mode: str = "hard",
    frame_skip: int = 1, warmup: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The level's first frame, then `num_frames` frames with `action` held throughout, each
    `frame_skip` game frames after the one before (as `record_level` records them).

    A level's first frame depends on its seed alone (not on the policy's seed), so this starts
    where a recorded episode of that level starts. With `warmup` > 0, the start is instead the
    frame after `warmup` steps of uniformly random buttons drawn from the level's seed: the same
    for every held action (procgen is deterministic), somewhere inside the level rather than at
    its start (the agent may still carry the warm-up's momentum for a step or two).
    Returns `frames (num_frames+1, H, W, 3)` uint8 and `first (num_frames+1)` bool: a new life
    starts at that frame (a death or a finished level restarts it, so the shift into that frame
    is not the action's doing).
    """
    env = make_env(env_name, level_seed, distribution_mode, seed=0)
    for a in np.random.default_rng(level_seed).integers(0, env.ac_space.eltype.n, warmup):
        for _ in range(frame_skip):
            env.act(np.array([a], dtype=np.int32))
    frames, first = [], []
    act = np.array([action], dtype=np.int32)
    restarted = False
    for t in range(num_frames + 1):
        _, obs, is_first = env.observe()
        frames.append(obs["rgb"][0].copy())
        first.append((bool(is_first[0]) or restarted) and t > 0)
        env.act(act)
        restarted = False
        for _ in range(frame_skip - 1):
            restarted |= bool(env.observe()[2][0])
            env.act(act)
    return np.stack(frames), np.array(first)


def env_facts(env_name: str, distribution_mode: str = "hard") -> tuple[list[str], list[int]]:
    """Procgen's button combos (CoinRun's 15: `LEFT+DOWN`, ..., `NOOP`, ...) and frame shape."""
    env = make_env(env_name, 0, distribution_mode, 0)
    names = ["+".join(c) if c else "NOOP" for c in env.callmethod("get_combos")]
    return names, list(env.ob_space["rgb"].shape)


@dataclass(frozen=True)
class SampleReport:
    recorded: int  # episodes recorded by this call
    skipped: int  # episodes already on disk (a resumed run)
    frames: int  # frames recorded by this call
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def sample(
    root: str | os.PathLike,
    env_name: str = "coinrun",
    num_envs: int = 10_000,
    timeout: int = 1000,
    start_level: int = 0,
    distribution_mode: str = "hard",
    workers: int | None = None,
    seed: int = 0,
    command: str = "",
    progress: bool = True,
    action_repeat: int = 1,
    frame_skip: int = 1,
) -> SampleReport:
    """Record level seeds `start_level .. start_level + num_envs - 1` into `<root>/<env>/`.

    Resumable: levels whose episode file exists are skipped, and leftovers of an
    interrupted write (`*.tmp`) are removed. Raises `ValueError` on bad arguments and
    `OSError` when the root cannot be written.
    """
    env_name = canonical_env_name(env_name)
    if num_envs < 1:
        raise ValueError(f"--num_envs must be at least 1 (got {num_envs})")
    if timeout < 1:
        raise ValueError(f"--timeout must be at least 1 step (got {timeout})")
    if start_level < 0:
        raise ValueError(f"--start_level must be non-negative (got {start_level})")
    if distribution_mode not in ("easy", "hard", "extreme", "memory", "exploration"):
        raise ValueError(f"unknown --distribution_mode {distribution_mode!r}")
    if action_repeat < 1:
        raise ValueError(f"--action_repeat must be at least 1 step (got {action_repeat})")
    if frame_skip < 1:
        raise ValueError(f"--frame_skip must be at least 1 frame (got {frame_skip})")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {workers})")

    out = env_dir(root, env_name)
    episodes = out / EPISODE_DIR
    episodes.mkdir(parents=True, exist_ok=True)
    for stale in episodes.glob("*.tmp"):  # an interrupted write: never complete, start it over
        stale.unlink()
    meta = _metadata(env_name, distribution_mode, timeout, seed, command, action_repeat, frame_skip)
    _check_resume(out / METADATA_FILE, meta)
    write_json(out / METADATA_FILE, {**meta, **_on_disk(episodes, timeout)})

    levels = range(start_level, start_level + num_envs)
    todo = [lv for lv in levels if not episode_path(episodes, lv).exists()]
    jobs = [(env_name, lv, timeout, distribution_mode, seed, str(episodes), action_repeat, frame_skip) for lv in todo]
    start = time.perf_counter()
    with tqdm(total=len(todo) * timeout, unit="frame", unit_scale=True, disable=not progress,
              desc=f"{env_name} {len(todo)} levels", mininterval=0.5 if _tty() else 10) as bar:  # fmt: skip
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                bar.update(_record_job(job))
        else:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(min(workers, len(jobs)), initializer=_ignore_sigint) as pool:
                for n in pool.imap_unordered(_record_job, jobs):
                    bar.update(n)
    seconds = time.perf_counter() - start
    write_json(out / METADATA_FILE, {**meta, **_on_disk(episodes, timeout)})
    return SampleReport(len(todo), num_envs - len(todo), len(todo) * timeout, seconds)


_buffer: np.ndarray | None = None  # one per worker process, reused for every level it records


def _record_job(job: tuple) -> int:
    global _buffer
    env_name, level, timeout, mode, seed, episodes, repeat, skip = job
    if _buffer is None or len(_buffer) != timeout:
        _buffer = np.zeros(timeout, dtype=step_dtype())
    episode = record_level(env_name, level, timeout, mode, seed, _buffer, action_repeat=repeat, frame_skip=skip)
    write_episode(episode_path(Path(episodes), level), episode)
    return timeout


def _ignore_sigint() -> None:  # Ctrl-C is handled once, by the parent, which stops the pool
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _tty() -> bool:
    return os.isatty(2)


def _metadata(env_name: str, distribution_mode: str, timeout: int, seed: int, command: str,
              action_repeat: int = 1, frame_skip: int = 1) -> dict:  # fmt: skip
    names, frame_shape = env_facts(env_name, distribution_mode)
    policy = "uniform random over all actions, a fresh action every step (Genie App. F)"
    if action_repeat > 1:
        policy = f"uniform random over all actions, each held for {action_repeat} steps (sticky)"
    if frame_skip > 1:
        policy += f"; each step {frame_skip} game frames, the last one recorded"
    return {
        "format": FORMAT_VERSION,
        "env_name": env_name,
        "distribution_mode": distribution_mode,
        "timeout": timeout,
        "seed": seed,
        "policy": policy,
        "action_repeat": action_repeat,
        "frame_skip": frame_skip,
        "frame_shape": frame_shape,
        "num_actions": len(names),
        "action_names": names,
        "procgen_version": importlib_metadata.version("procgen-mirror" if _has("procgen-mirror") else "procgen"),
        "command": command,
    }


def _has(dist: str) -> bool:
    try:
        importlib_metadata.version(dist)
        return True
    except importlib_metadata.PackageNotFoundError:
        return False


def _check_resume(path: Path, meta: dict) -> None:
    if not path.exists():
        return
    old = json.loads(path.read_text())
    old.setdefault("action_repeat", 1)  # recorded before the option existed: one step per action
    old.setdefault("frame_skip", 1)  # likewise: one game frame per step
    diff = [f"{k}={old.get(k)!r} (now {meta[k]!r})" for k in _MUST_MATCH if old.get(k) != meta[k]]
    if diff:
        raise ValueError(f"{path.parent} holds data recorded with {', '.join(diff)}; use another --root")


def _on_disk(episodes: Path, timeout: int) -> dict:
    seeds = [level_seed_of(p) for p in list_episodes(episodes)]
    return {
        "num_episodes": len(seeds),
        "num_frames": len(seeds) * timeout,
        "level_seed_range": [min(seeds), max(seeds)] if seeds else None,
    }


def write_json(path: Path, obj: dict) -> None:
    """`obj` as JSON at `path` (its folder made if missing), written to a temporary file first so a
    reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
