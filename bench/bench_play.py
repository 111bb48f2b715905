"""Interactive play benchmark: frames/s of `World.step` (MaskGIT + decoding), per preset.

    python bench/bench_play.py [--frames 20] [--steps 25] [--device cpu|cuda] [--full-frames 2] [--repeats 5]

For the tiny preset (config/genie.tiny.yaml + tokenize.tiny.yaml) and the App. F CoinRun
preset (config/genie.yaml + tokenize.yaml) it builds the networks from the YAML (random
weights: the work per frame does not depend on them), resets a `World` on one 64x64 image
and times `--frames` steps at batch 1 with `--steps` MaskGIT rounds each, the way
`play.py --interactive` runs. The context window slides as in play (the dynamics model's
max_frames), so rebuilds of the cache are included. It also reports the time per frame
spent decoding, the same rollout without the temporal cache, and with the blocks of each
MaskGIT round compiled (`World(compile=True)`: torch.compile, CUDA graphs on a GPU).
Target (issue #5): the tiny preset playable, >= 10 frames/s on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_genie import build  # noqa: E402
from bench_tokenizer import _sync, matmul_peak  # noqa: E402

from genie.world import World  # noqa: E402


def measure(
    preset: str, frames: int, steps: int, device: str, use_cache: bool = True, compile: bool = False, repeats: int = 1
) -> dict:
    tokenizer, _, dynamics = build(preset)
    world = World(tokenizer.to(device), dynamics.to(device), steps=steps, temperature=1.0,
                  generator=torch.Generator(device=device).manual_seed(0), compile=compile)  # fmt: skip
    if not use_cache:  # the same steps, every past frame recomputed at every MaskGIT round
        step = dynamics.step
        dynamics.step = lambda *a, **k: step(*a, **{**k, "use_cache": False})
    image = torch.rand(1, 3, 64, 64, device=device) * 2 - 1
    world.reset(image)
    for i in range(world.window if compile else 1):  # warm-up (and compilation)
        world.step(i % world.num_actions)
    decode_s = 0.0
    decode = world._decode

    def timed_decode(tokens):
        nonlocal decode_s
        _sync(device)
        t0 = time.perf_counter()
        out = decode(tokens)
        _sync(device)
        decode_s += time.perf_counter() - t0
        return out

    world._decode = timed_decode
    rates = []
    for _ in range(repeats):  # this shared VM's speed drifts: repeats show the spread
        _sync(device)
        start = time.perf_counter()
        for i in range(frames):
            world.step(i % world.num_actions)
        _sync(device)
        rates.append(frames / (time.perf_counter() - start))
    fps = statistics.median(rates)
    return {"fps": fps, "min": min(rates), "max": max(rates), "ms": 1000 / fps,
            "decode_ms": 1000 * decode_s / (frames * repeats), "window": world.window}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=20, help="timed steps of the tiny preset")
    p.add_argument("--full-frames", type=int, default=2, help="timed steps of the App. F preset")
    p.add_argument("--steps", type=int, default=25, help="MaskGIT rounds per frame (Genie: 25)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of the tiny preset (median and range shown)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, "
          f"{args.steps} MaskGIT steps per frame")  # fmt: skip
    peak = matmul_peak(args.device, torch.float32, n=2048, reps=5)
    print(f"fp32 matmul now: {peak / 1e9:.0f} GFLOP/s (this shared VM varies run to run; read rows against it)")
    rows = [  # name, preset, frames, cache, compile, repeats
        ("tiny (genie.tiny.yaml)", "genie.tiny.yaml", args.frames, True, False, args.repeats),
        ("tiny, compiled rounds", "genie.tiny.yaml", args.frames, True, True, args.repeats),
        ("tiny, no KV cache", "genie.tiny.yaml", max(2, args.frames // 4), False, False, 1),
        ("CoinRun App. F (genie.yaml)", "genie.yaml", args.full_frames, True, False, 1),
    ]
    if args.no_compile:
        rows = [row for row in rows if not row[4]]
    print(f"{'preset':32s} {'frames/s':>9s} {'(min-max)':>12s} {'ms/frame':>9s} {'decode ms':>10s} {'window':>7s}")
    for name, preset, frames, cache, compile, repeats in rows:
        r = measure(preset, frames, args.steps, args.device, cache, compile, repeats)
        spread = f"({r['min']:.1f}-{r['max']:.1f})" if repeats > 1 else ""
        print(f"{name:32s} {r['fps']:9.2f} {spread:>12s} {r['ms']:9.1f} {r['decode_ms']:10.1f} {r['window']:7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
