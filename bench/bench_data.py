"""Data pipeline benchmark: raw procgen stepping vs. sample.py end to end, and the data module.

    python bench/bench_data.py            # or: make bench

Measured side by side in one run on this machine:
  raw       procgen alone, nothing stored, on `--workers` processes: exactly the stepping
            sample.py does (a fresh env per level seed, random actions), measured before and
            after the sample.py run (their mean is the baseline). For reference also two
            other ways to step procgen: one env per process over random levels, and one
            vectorized env stepped by procgen's thread pool.
  sample    `python sample.py --workers N ...` as a user runs it: wall clock of the whole
            command (interpreter start, asset loading, recording, writing files).
  loader    VideoDataModule from the split of those episodes: 16-frame clips, batch 32, one
            worker process, including the uint8 -> float conversion of each batch.

Targets: sample >= 60 % of raw and >= 8,000 frames/s; loader >= 20,000 frames/s.
The default run records 1,000 levels (1M frames, ~10 % of App. F's dataset) so that the
one-off start-up (~2 s, mostly procgen loading its assets) weighs as in real use.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.record import make_env, procgen_env_class  # noqa: E402


def _raw_single(seconds: float) -> tuple[int, float]:
    """One single-threaded env stepped in this process, over ever new levels (num_levels=0)."""
    env = make_env("coinrun", 0, "hard", 0)
    env = type(env)(num=1, env_name="coinrun", num_levels=0, distribution_mode="hard", num_threads=0, rand_seed=1)
    return _step_for(env, np.random.default_rng(0).integers(0, 15, size=(4096, 1), dtype=np.int32), seconds)


def _step_for(env, acts: np.ndarray, seconds: float) -> tuple[int, float]:
    """Step `env` through `acts` (rows: one action per env) repeatedly for `seconds`: (frames, s)."""
    for a in acts[:20]:  # warm up: first steps after loading are slower
        env.act(a)
        env.observe()
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in acts:
            env.act(a)
            env.observe()
        frames += acts.size
    return frames, time.perf_counter() - start


def raw_processes(workers: int, seconds: float) -> float:
    make_env("coinrun", 0, "hard", 0)  # load assets once, before forking
    with mp.get_context("fork").Pool(workers) as pool:
        results = pool.map(_raw_single, [seconds] * workers)
    return sum(f / s for f, s in results)


def _raw_levels(job: tuple[list[int], int]) -> tuple[int, float]:
    """Exactly sample.py's stepping (a fresh env per level seed, `timeout` random steps), storing nothing."""
    levels, timeout = job
    ProcgenGym3Env = procgen_env_class()
    frames, start = 0, time.perf_counter()
    for lv in levels:
        env = ProcgenGym3Env(num=1, env_name="coinrun", start_level=lv, num_levels=1, distribution_mode="hard",
                             num_threads=0)  # fmt: skip
        for a in np.random.default_rng(lv).integers(0, 15, size=(timeout, 1), dtype=np.int32):
            env.act(a)
            env.observe()
        frames += timeout
    return frames, time.perf_counter() - start


def raw_levels(workers: int, levels: int, timeout: int) -> float:
    make_env("coinrun", 0, "hard", 0)  # load assets once, before forking
    jobs = [(list(range(i, levels, workers)), timeout) for i in range(workers)]
    with mp.get_context("fork").Pool(workers) as pool:
        results = pool.map(_raw_levels, jobs)
    return sum(f / s for f, s in results)


def raw_vectorized(workers: int, seconds: float, num: int = 64) -> float:
    env = make_env("coinrun", 0, "hard", 0)
    env = type(env)(num=num, env_name="coinrun", num_levels=0, distribution_mode="hard", num_threads=workers)
    frames, elapsed = _step_for(env, np.random.default_rng(0).integers(0, 15, size=(256, num), dtype=np.int32), seconds)
    return frames / elapsed


def sample_end_to_end(root: Path, workers: int, levels: int, timeout: int) -> float:
    cmd = [sys.executable, "sample.py", "--env_name", "Coinrun", "--num_envs", str(levels), "--timeout", str(timeout),
           "--root", str(root), "--workers", str(workers), "--quiet"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return levels * timeout / (time.perf_counter() - start)


def loader(root: Path, batches: int, num_frames: int = 16, batch_size: int = 32) -> float:
    from genie.data import VideoDataModule

    dm = VideoDataModule(root=str(root), num_frames=num_frames, batch_size=batch_size, num_workers=1)
    it = iter(dm.train_dataloader())
    os.sync()  # split.py's freshly written arrays: flush them now, not while we measure
    for _ in range(20):  # warm up: worker start, first page faults of the memory map
        dm.on_after_batch_transfer(next(it), 0)
    rates = []
    for _ in range(3):  # the median of three windows: this shared machine's speed drifts
        start = time.perf_counter()
        for _ in range(batches // 3):
            clip = dm.on_after_batch_transfer(next(it), 0)
        rates.append((batches // 3) * batch_size * num_frames / (time.perf_counter() - start))
    assert clip.video.shape == (batch_size, 3, num_frames, 64, 64)
    return float(np.median(rates))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--levels", type=int, default=1000, help="levels recorded by the sample.py run")
    p.add_argument("--timeout", type=int, default=1000, help="steps per level (App. F: 1000)")
    p.add_argument("--raw_levels", type=int, default=200, help="levels stepped by each raw measurement")
    p.add_argument("--seconds", type=float, default=4.0, help="duration of the other raw measurements")
    p.add_argument("--loader_levels", type=int, default=100, help="levels split for the loader measurement")
    p.add_argument("--batches", type=int, default=300, help="loader batches timed")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        # Raw stepping before and after the sample.py run, so that drift of this shared machine's
        # speed during the run shows up as a spread instead of a biased ratio.
        raw_before = raw_levels(args.workers, args.raw_levels, args.timeout)
        e2e = sample_end_to_end(tmp / "all", args.workers, args.levels, args.timeout)
        raw_after = raw_levels(args.workers, args.raw_levels, args.timeout)
        raw_p = raw_processes(args.workers, args.seconds)
        raw_v = raw_vectorized(args.workers, args.seconds)
        on_disk = sum(f.stat().st_size for f in (tmp / "all").rglob("*.zst"))
        subset = tmp / "subset" / "coinrun" / "episodes"  # the loader needs only a slice of the levels
        subset.mkdir(parents=True)
        for f in sorted((tmp / "all" / "coinrun" / "episodes").glob("*.zst"))[: args.loader_levels]:
            os.link(f, subset / f.name)
        subprocess.run([sys.executable, "split.py", "--root", str(tmp / "subset"), "--quiet"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        load = loader(tmp / "subset", args.batches)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    raw = (raw_before + raw_after) / 2
    frames = args.levels * args.timeout
    rows = [
        (f"raw procgen, sample.py's stepping ({args.raw_levels} levels, before)", f"{raw_before:,.0f}", ""),
        (f"raw procgen, sample.py's stepping ({args.raw_levels} levels, after)", f"{raw_after:,.0f}", ""),
        ("raw procgen, 1 env per process over random levels", f"{raw_p:,.0f}", "(reference)"),
        (f"raw procgen, vectorized (64 envs, {args.workers} threads)", f"{raw_v:,.0f}", "(reference)"),
        (f"sample.py end to end ({args.levels} levels x {args.timeout}, wall clock)", f"{e2e:,.0f}", ">= 8,000"),
        ("  ratio sample.py / raw (mean of before and after)", f"{e2e / raw:.0%}", ">= 60%"),
        ("  ratio sample.py / fastest raw of all four", f"{e2e / max(raw_before, raw_after, raw_p, raw_v):.0%}", ""),
        ("data module, 1 worker, 16-frame clips x 32 (float, ready)", f"{load:,.0f}", ">= 20,000"),
    ]
    print(f"\nmachine: {os.cpu_count()} cores, --workers {args.workers}; figures in frames/s")
    for name, value, target in rows:
        print(f"  {name:<66} {value:>8}  {target}")
    per_frame = on_disk / frames
    print(f"  episodes on disk: {per_frame:,.0f} bytes/frame ({64 * 64 * 3 / per_frame:.1f}x smaller than raw)")
    ok = e2e >= 8000 and e2e / raw >= 0.6 and load >= 20_000
    print("all targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
