"""Where one tiny-preset play step (`World.step`) spends its time (CPU), part by part.

    python bench/profile_play_step.py [--frames 30] [--reps 3] [--no-compile]

Builds the genie.tiny.yaml networks (random weights, as bench_play.py), warms up a `World` with
compiled MaskGIT rounds (as `play.py --interactive`; `--no-compile` for eager) and wraps its
parts with timers: the blocks of the 25 rounds, the output head, the sampler, the rest of
MaskGIT's bookkeeping, decoding, and the cache's extension and rebuilds (`_trunk`).
Milliseconds per frame, per repetition.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_genie import build  # noqa: E402

from genie import dynamics as dynamics_module  # noqa: E402
from genie.world import World  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    tokenizer, _, dynamics = build("genie.tiny.yaml")
    world = World(tokenizer, dynamics, generator=torch.Generator().manual_seed(0), compile=not args.no_compile)
    world.reset(torch.rand(1, 3, 64, 64) * 2 - 1)
    for i in range(world.window):  # warm-up (and compilation)
        world.step(i % world.num_actions)

    spent: dict[str, float] = {}

    def timed(owner, attr: str, part: str) -> None:
        fn = getattr(owner, attr)
        spent[part] = 0.0

        def wrapper(*a, **k):
            start = time.perf_counter()
            out = fn(*a, **k)
            spent[part] += time.perf_counter() - start
            return out

        setattr(owner, attr, wrapper)

    timed(dynamics_module.maskgit, "decode", "MaskGIT (all rounds)")
    timed(dynamics, "_round", "  blocks")
    timed(dynamics.head, "forward", "  output head")
    timed(dynamics_module.maskgit, "sample_categorical", "  sampler")
    timed(world, "_decode", "decoding")
    timed(dynamics, "_trunk", "cache extension + rebuilds")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, compiled rounds: {dynamics.compiled}")
    for rep in range(args.reps):
        spent.update(dict.fromkeys(spent, 0.0))
        start = time.perf_counter()
        for i in range(args.frames):
            world.step(i % world.num_actions)
        total = (time.perf_counter() - start) / args.frames * 1000
        parts = {k: v / args.frames * 1000 for k, v in spent.items()}
        inner = sum(v for k, v in parts.items() if k.startswith("  "))  # the parts within MaskGIT
        parts["  other bookkeeping"] = parts["MaskGIT (all rounds)"] - inner
        accounted = sum(v for k, v in parts.items() if not k.startswith("  "))
        parts["World.step, rest"] = total - accounted
        print(f"rep {rep}: {total:.1f} ms/frame ({1000 / total:.1f} frames/s)")
        for k, v in parts.items():
            print(f"  {k:30s} {v:6.1f} ms")


if __name__ == "__main__":
    main()
