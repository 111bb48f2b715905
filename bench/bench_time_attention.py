"""A MaskGIT round's temporal attention, two ways, side by side: products and sums over the cache
where it lies (`genie.attention._attend_one`, what play runs) against SDPA over the cache joined
to the new keys (what it ran before; kept here only to compare).

    python bench/bench_time_attention.py [--bundle res] [--frames 24] [--repeats 5] [--compile]

Each round of a frame, every one of the s = h * w places has one new query and attends over at
most `max_frames` cached keys and its own. Times (1) that op alone at the bundle's shapes and
(2) `World.step` of the bundled model (25 rounds, temperature 1; eager as `play.py` writes a file,
or with `--compile` as `play.py --interactive` plays), switching the form between runs so that both
see the same machine. Ratios are what to read; the VM drifts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie import attention  # noqa: E402
from genie.attention import FixedKV  # noqa: E402
from genie.world import load_world  # noqa: E402


def attend_joined(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: FixedKV) -> torch.Tensor:
    """The SDPA form of `_attend_one`: `(... n 1 d)`, the cache copied next to the new key first."""
    mask = torch.cat([past.valid, past.valid.new_ones(1)])[None]  # (1 T+1)
    keys, values = torch.cat([past.k, k], dim=-2), torch.cat([past.v, v], dim=-2)  # (... n T+1 d)
    lead = q.shape[:-3]
    y = F.scaled_dot_product_attention(
        q.reshape(-1, *q.shape[-3:]), keys.reshape(-1, *keys.shape[-3:]), values.reshape(-1, *values.shape[-3:]),
        attn_mask=mask,
    )  # fmt: skip
    return y.view(*lead, *y.shape[-3:])


FORMS = {"products and sums": attention._attend_one, "SDPA, joined cache": attend_joined}


def time_op(shape: tuple[int, ...], frames: int, filled: int, repeats: int) -> dict[str, float]:
    """Microseconds per call of each form on one query per place, `shape = (b s n d)`, over a `frames`-long buffer."""
    b, s, n, d = shape
    q, k, v = (torch.randn(b, s, n, 1, d) for _ in range(3))
    past = FixedKV(torch.randn(b, s, n, frames, d), torch.randn(b, s, n, frames, d), torch.arange(frames) < filled)
    spent = {name: [] for name in FORMS}
    for _ in range(repeats):
        for name, form in FORMS.items():
            start = time.perf_counter()
            for _ in range(50):
                form(q, k, v, past)
            spent[name].append((time.perf_counter() - start) / 50 * 1e6)
    return {name: statistics.median(us) for name, us in spent.items()}


def time_play(world, frames: int, repeats: int) -> dict[str, list[float]]:
    """Frames/s of `world.step` (a reset `World`) with each form, alternating run by run."""
    rates = {name: [] for name in FORMS}
    try:
        for form in FORMS.values():  # warm-up; compiled rounds compile once per form and keep both
            attention._attend_one = form
            for i in range(world.window):
                world.step(i % world.num_actions)
        for _ in range(repeats):
            for name, form in FORMS.items():
                attention._attend_one = form  # what `Attention._attend_fixed` calls for one new token
                start = time.perf_counter()
                for i in range(frames):
                    world.step(i % world.num_actions)
                rates[name].append(frames / (time.perf_counter() - start))
    finally:
        attention._attend_one = FORMS["products and sums"]
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(REPO / "res"), help="folder with genie.ckpt and tokenizer.ckpt")
    p.add_argument("--frames", type=int, default=24, help="timed World.step calls per run")
    p.add_argument("--repeats", type=int, default=5, help="runs of each form (medians shown)")
    p.add_argument("--compile", action="store_true", help="compiled MaskGIT rounds, as play.py --interactive")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bundle = Path(args.bundle)
    world = load_world(str(bundle / "genie.ckpt"), str(bundle / "tokenizer.ckpt"), temperature=1.0,
                       generator=torch.Generator().manual_seed(0), compile=args.compile)  # fmt: skip
    world.reset(torch.rand(1, 3, *world.frame_shape) * 2 - 1)
    block = world.dynamics.blocks[0].time
    h, w = world.tokens.shape[-2:]
    shape = (1, h * w, block.n_head, block.d_head)
    op = time_op(shape, world.window, world.window - 1, args.repeats * 4)
    print(f"one round's temporal attention, (b s n d) = {shape}, {world.window}-frame buffer, "
          f"{world.window - 1} filled: µs per call (median)")  # fmt: skip
    for name, us in op.items():
        print(f"  {name:22s} {us:8.1f}")
    rates = time_play(world, args.frames, args.repeats)
    how = "compiled rounds" if world.dynamics.compiled else "eager"
    print(f"bundled model World.step, {world.steps} rounds, {how}, {args.frames} frames x {args.repeats} runs each, alternating:")
    for name, r in rates.items():
        print(f"  {name:22s} {statistics.median(r):6.2f} frames/s  ({min(r):.1f}-{max(r):.1f})")
    first, second = (statistics.median(r) for r in rates.values())
    print(f"  ratio {first / second:.2f}x")


if __name__ == "__main__":
    main()
