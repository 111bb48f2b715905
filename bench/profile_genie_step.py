"""Where one tiny stage-2 training step spends its time (CPU), part by part.

    python bench/profile_genie_step.py [--batch 8] [--frames 6] [--reps 3]

Builds the genie.tiny.yaml networks (random weights, as bench_genie.py) and times, on a
batch the size of the tiny preset's: frozen tokenization, the LAM forward, the dynamics
forward, and backward + AdamW. Wall-clock seconds per part, after one warm-up step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_genie import build  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    tokenizer, lam, dynamics = build("genie.tiny.yaml")
    opt = torch.optim.AdamW([*lam.parameters(), *dynamics.parameters()], lr=1e-4)
    video = torch.rand(args.batch, 3, args.frames, 64, 64) * 2 - 1

    def step() -> list[float]:
        marks = [time.perf_counter()]
        with torch.no_grad():
            tokens = tokenizer.tokenize(video).indices
        marks.append(time.perf_counter())
        out = lam.compute_losses(video)
        marks.append(time.perf_counter())
        dyn = dynamics.compute_losses(tokens, out.actions)
        marks.append(time.perf_counter())
        (out.loss + dyn.loss).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        return [b - a for a, b in zip(marks, marks[1:])]

    step()  # warm-up
    print(f"batch {args.batch} x {args.frames} frames, {torch.get_num_threads()} threads; seconds per part:")
    print("  tokenize  lam_fwd  dyn_fwd  bwd+adamw")
    for _ in range(args.reps):
        print("  " + "  ".join(f"{s:8.3f}" for s in step()))


if __name__ == "__main__":
    main()
