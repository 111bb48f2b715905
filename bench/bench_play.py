"""Interactive play benchmark: frames/s of `World.step` (MaskGIT + decoding), per preset.

    python bench/bench_play.py [--frames 20] [--steps 25] [--device cpu|cuda] [--full-frames 2] [--repeats 5] [--bundle [DIR]]

For the tiny preset (config/genie.tiny.yaml + tokenize.tiny.yaml) and the App. F CoinRun
preset (config/genie.yaml + tokenize.yaml) it builds the networks from the YAML (random
weights: the work per frame does not depend on them); for the bundled model it loads res/ (or
another folder that `scripts/bundle.py --out` wrote, e.g. a candidate before it replaces res/)
(whose dynamics head may differ from the preset's, e.g. FSQ digits). It resets a `World` on one 64x64 image
and times `--frames` steps at batch 1 with `--steps` MaskGIT rounds each. The context window
slides as in play (the dynamics model's max_frames), so rebuilds of the cache are included.
It also reports the time per frame spent decoding and the same rollout without the temporal
cache.

The tiny preset is timed both as `play.py` runs it to a file (eager) and as `play.py
--interactive` runs it (MaskGIT rounds compiled: `World(compile=True)`, torch.compile, CUDA
graphs on a GPU), the two timed in turn `--repeats` times so that their ratio is not this
shared VM's drift; then as the page sees it, `/step` requests over HTTP to the play server
(`measure_http`). Target: the tiny preset playable, >= 10 frames/s on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_genie import build  # noqa: E402
from bench_tokenizer import _sync, matmul_peak  # noqa: E402

from genie import maskgit  # noqa: E402
from genie.dynamics import DynamicsModel  # noqa: E402
from genie.serve import PlayServer  # noqa: E402
from genie.tokenizer import VideoTokenizer  # noqa: E402
from genie.world import World, load_world  # noqa: E402


def networks(preset: str) -> tuple[VideoTokenizer, DynamicsModel]:
    """The tokenizer and dynamics model of a preset YAML (random weights) or of a bundle folder."""
    folder = REPO / preset
    if folder.is_dir():  # as play.py loads it, vocabulary check included
        world = load_world(str(folder / "genie.ckpt"), str(folder / "tokenizer.ckpt"))
        return world.tokenizer, world.dynamics
    tokenizer, _, dynamics = build(preset)
    return tokenizer, dynamics


class _Timed:
    """A warmed-up `World` on a random prompt whose steps (and the decoding within them) are timed."""

    def __init__(self, preset: str, steps: int, device: str, use_cache: bool = True, compile: bool = False):
        tokenizer, dynamics = networks(preset)
        self.device = device
        self.world = World(tokenizer.to(device), dynamics.to(device), steps=steps, temperature=1.0,
                           generator=torch.Generator(device=device).manual_seed(0), compile=compile)  # fmt: skip
        if not use_cache:  # the same steps, every past frame recomputed at every MaskGIT round
            step = dynamics.step
            dynamics.step = lambda *a, **k: step(*a, **{**k, "use_cache": False})
        self.world.reset(torch.rand(1, 3, 64, 64, device=device) * 2 - 1)
        for i in range(self.world.window if compile else 1):  # warm-up (and compilation)
            self.world.step(i % self.world.num_actions)
        self.decode_s, self.frames, self.rates = 0.0, 0, []
        decode = self.world._decode

        def timed_decode(tokens):
            _sync(device)
            t0 = time.perf_counter()
            out = decode(tokens)
            _sync(device)
            self.decode_s += time.perf_counter() - t0
            return out

        self.world._decode = timed_decode

    def run(self, frames: int) -> None:
        _sync(self.device)
        start = time.perf_counter()
        for i in range(frames):
            self.world.step(i % self.world.num_actions)
        _sync(self.device)
        self.rates.append(frames / (time.perf_counter() - start))
        self.frames += frames

    def result(self) -> dict:
        fps = statistics.median(self.rates)
        return {"fps": fps, "min": min(self.rates), "max": max(self.rates), "ms": 1000 / fps, "rates": self.rates,
                "decode_ms": 1000 * self.decode_s / self.frames, "window": self.world.window}  # fmt: skip


def measure_variants(
    preset: str, variants: dict[str, dict], frames: int, steps: int, device: str, repeats: int = 1
) -> dict[str, dict]:
    """Frames/s of several variants of one preset (`variants`: name -> `use_cache`/`compile`), timed in
    turn `repeats` times: this shared VM's speed drifts by tens of percent within a minute, so
    variants timed one after the other would differ by when they ran. Each result has the median
    and range of its runs, and `ratio`, the median of its per-run ratios to the first variant."""
    timed = {name: _Timed(preset, steps, device, **kw) for name, kw in variants.items()}
    for _ in range(repeats):
        for t in timed.values():
            t.run(frames)
    results = {name: t.result() for name, t in timed.items()}
    first = next(iter(results.values()))["rates"]
    for r in results.values():
        r["ratio"] = statistics.median(a / b for a, b in zip(r["rates"], first))
    return results


def measure(
    preset: str, frames: int, steps: int, device: str, use_cache: bool = True, compile: bool = False, repeats: int = 1
) -> dict:
    """Frames/s of one preset (see `measure_variants`)."""
    variant = {"use_cache": use_cache, "compile": compile}
    return measure_variants(preset, {"": variant}, frames, steps, device, repeats)[""]


def measure_http(preset: str, frames: int, steps: int, device: str, repeats: int = 1) -> dict:
    """Frames/s of `play.py --interactive` as the page sees them: `/step` requests over HTTP to a
    `PlayServer` of compiled rounds, PNG encoding and the model-thread hand-off included."""
    timed = _Timed(preset, steps, device, compile=True)
    server = PlayServer(timed.world, torch.rand(1, 3, 64, 64, device=device) * 2 - 1, port=0)
    server.warm_up()  # labels the actions and opens /step (it answers 503 before), on this, the model thread
    base = f"http://127.0.0.1:{server.server_address[1]}"
    stop, rates = threading.Event(), []

    def press_keys() -> None:  # the page's side: one request per frame
        try:
            for _ in range(repeats):
                start = time.perf_counter()
                for i in range(frames):
                    urllib.request.urlopen(f"{base}/step?action={i % timed.world.num_actions}").read()
                rates.append(frames / (time.perf_counter() - start))
        finally:
            stop.set()

    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=press_keys, daemon=True).start()
    try:
        server.work_forever(stop)  # the model on this thread, as serve() runs it
    finally:
        server.shutdown()
        server.server_close()
    if len(rates) < repeats:
        raise RuntimeError("the HTTP benchmark's requests failed")
    fps = statistics.median(rates)
    return {"fps": fps, "min": min(rates), "max": max(rates), "ms": 1000 / fps, "rates": rates,
            "decode_ms": 1000 * timed.decode_s / (frames * repeats), "window": timed.world.window}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=20, help="timed steps of the tiny preset")
    p.add_argument("--full-frames", type=int, default=2, help="timed steps of the App. F preset")
    p.add_argument("--steps", type=int, default=maskgit.STEPS, help="MaskGIT rounds per frame (Genie: 25)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of the tiny preset (median and range shown)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    p.add_argument("--bundle", nargs="?", const="res", metavar="DIR",
                   help="also time the bundled model (default res/): eager, compiled, HTTP")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, "
          f"{args.steps} MaskGIT steps per frame")  # fmt: skip
    peak = matmul_peak(args.device, torch.float32, n=2048, reps=5)
    print(f"fp32 matmul now: {peak / 1e9:.0f} GFLOP/s (this shared VM varies run to run; read rows against it)")
    print(f"{'preset':44s} {'frames/s':>9s} {'(min-max)':>12s} {'vs eager':>9s} {'ms/frame':>9s} {'decode ms':>10s}")
    tiny = {  # timed in turn (measure_variants): their ratio is not the VM's drift
        "tiny, eager (play.py to a file)": {"compile": False},
        "tiny, compiled rounds (play.py --interactive)": {"compile": True},
    }
    if args.no_compile:
        tiny = dict(list(tiny.items())[:1])
    paired = set(tiny)
    rows = measure_variants("genie.tiny.yaml", tiny, args.frames, args.steps, args.device, args.repeats)
    if not args.no_compile:
        rows["tiny, play.py --interactive over HTTP"] = measure_http(
            "genie.tiny.yaml", args.frames, args.steps, args.device, args.repeats
        )
    if args.bundle:
        name = f"bundled model ({args.bundle.rstrip('/')}/)"
        bundle = {f"{name}, eager": {"compile": False}, f"{name}, compiled rounds": {"compile": not args.no_compile}}
        paired |= set(bundle)
        rows |= measure_variants(args.bundle, bundle, args.frames, args.steps, args.device, args.repeats)
        if not args.no_compile:
            rows[f"{name}, --interactive over HTTP"] = measure_http(
                args.bundle, args.frames, args.steps, args.device, args.repeats
            )
    rows["tiny, no KV cache"] = measure("genie.tiny.yaml", max(2, args.frames // 4), args.steps, args.device, False)
    rows["CoinRun App. F (genie.yaml)"] = measure("genie.yaml", args.full_frames, args.steps, args.device)
    for name, r in rows.items():
        spread = f"({r['min']:.1f}-{r['max']:.1f})" if len(r["rates"]) > 1 else ""
        ratio = f"{r['ratio']:.2f}x" if name in paired else ""  # against the first of its pair
        print(f"{name:44s} {r['fps']:9.2f} {spread:>12s} {ratio:>9s} {r['ms']:9.1f} {r['decode_ms']:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
