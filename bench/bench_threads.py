"""Why the play server runs its model on one thread: the same work, main thread vs. a second one.

    python bench/bench_threads.py [--frames 24]

PyTorch's CPU thread pool (OpenMP) belongs to the thread that started it. Once the main thread
has run ops, ops issued from another thread (as an HTTP request thread would) run slower. This
times a 256x64 @ 64x192 matmul (a projection of one tiny-preset round) and `World.step` of the
tiny preset (25 MaskGIT rounds, random weights) on the main thread, then on a second thread,
then on the main thread again. `genie/serve.py` cites this.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_genie import build  # noqa: E402

from genie.world import World  # noqa: E402


def on_thread(fn, second: bool) -> float:
    if not second:
        return fn()
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=24, help="timed World.step calls per row")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    x, w = torch.randn(256, 64), torch.randn(192, 64)

    def matmul_us() -> float:
        for _ in range(50):
            torch.nn.functional.linear(x, w)
        start = time.perf_counter()
        for _ in range(2000):
            torch.nn.functional.linear(x, w)
        return (time.perf_counter() - start) / 2000 * 1e6

    tokenizer, _, dynamics = build("genie.tiny.yaml")
    world = World(tokenizer, dynamics, steps=25, generator=torch.Generator().manual_seed(0))
    world.reset(torch.rand(1, 3, 64, 64) * 2 - 1)

    def step_fps() -> float:
        world.step(0)
        start = time.perf_counter()
        for i in range(args.frames):
            world.step(i % world.num_actions)
        return args.frames / (time.perf_counter() - start)

    backend = [line for line in torch.__config__.parallel_info().splitlines() if "parallel backend" in line]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {' '.join(backend).strip()}")
    print(f"{'thread':14s} {'matmul us':>10s} {'World.step frames/s':>20s}")
    for name, second in (("main", False), ("second", True), ("main again", False)):
        print(f"{name:14s} {on_thread(matmul_us, second):10.1f} {on_thread(step_fps, second):20.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
