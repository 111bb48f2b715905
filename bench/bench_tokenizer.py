"""Tokenizer training-step benchmark: frames/s and achieved FLOP/s against a same-run matmul peak.

    python bench/bench_tokenizer.py [--batch 2] [--steps 3] [--device cpu|cuda]

For each preset (the tiny per-frame and MagViT-style CPU presets, and the App. F CoinRun
config/tokenize.yaml) it
builds the VideoTokenizer from the YAML, counts the FLOPs of one training step (forward +
backward, `torch.utils.flop_counter`), times `--steps` steps of forward, backward and an
AdamW update on random clips, and divides. The peak is a large matmul measured in the
same run (fp32 on CPU, bf16 on GPU). Targets on the CPU: see TARGETS.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie import blocks  # noqa: E402
from genie.lit.fast import adamw, compile_methods  # noqa: E402
from genie.tokenizer import VideoTokenizer  # noqa: E402


# Fractions of the matmul peak a CPU training step should reach: the per-frame tiny preset runs
# its convolutions as 2D kernels; the App. F preset is large enough to keep the cores busy.
TARGETS = {"tokenize.tiny.yaml": 0.40, "tokenize.yaml": 0.25}


def matmul_peak(device: str, dtype: torch.dtype, n: int = 4096, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build(config: Path) -> tuple[VideoTokenizer, int]:
    cfg = yaml.safe_load(config.read_text())
    return VideoTokenizer(**cfg["model"]["tokenizer"]["init_args"]), cfg["data"]["num_frames"]


def preset_batch(config: Path) -> int:
    """Clips per training step of a preset (its `data.batch_size`)."""
    return int(yaml.safe_load(config.read_text())["data"]["batch_size"])


def train_step(tok: VideoTokenizer, opt: torch.optim.Optimizer, video: torch.Tensor, autocast: bool) -> None:
    opt.zero_grad(set_to_none=True)
    with torch.autocast(video.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = tok.compute_losses(video).loss
    loss.backward()
    opt.step()


@contextlib.contextmanager
def as_conv3d():
    """Run per-frame kernels as the Conv3d they are stored as (what the 2D path replaces)."""
    saved = blocks.frame_conv
    blocks.frame_conv = lambda conv, x: nn.Conv3d.forward(conv, x)
    try:
        yield
    finally:
        blocks.frame_conv = saved


def measure(config: Path, batch: int, steps: int, device: str, compile: bool = False) -> dict:
    torch.manual_seed(0)
    tok, frames = build(config)
    tok.to(device)
    opt = adamw(tok.parameters(), lr=1e-4, betas=(0.9, 0.9), weight_decay=1e-4)
    video = torch.rand(batch, 3, frames, 64, 64, device=device) * 2 - 1
    autocast = device == "cuda"
    with FlopCounterMode(display=False) as counter:
        train_step(tok, opt, video, autocast)
    flops = counter.get_total_flops()  # counted eagerly: the compiled step does the same math
    if compile:
        compile_methods(tok, "compute_losses")
    train_step(tok, opt, video, autocast)  # warm-up (and compilation)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(tok, opt, video, autocast)
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {
        "frames_per_s": batch * frames / seconds,
        "flops_per_s": flops / seconds,
        "step_s": seconds,
        "frames": frames,
        "tokens_per_frame": (64 // tok.downsampling[1]) ** 2,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2, help="clips per step of tokenize.yaml (App. F uses 48)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    peak = matmul_peak(args.device, dtype)
    print(f"device {args.device} ({torch.get_num_threads()} threads), matmul peak {peak / 1e9:,.0f} GFLOP/s ({dtype})")
    ok = True
    for name in ("tokenize.tiny.yaml", "tokenize.tiny.magvit.yaml", "tokenize.yaml"):
        batch = args.batch if name == "tokenize.yaml" else preset_batch(REPO / "config" / name)
        r = measure(REPO / "config" / name, batch, args.steps, args.device)
        mfu = r["flops_per_s"] / peak
        print(
            f"  {name:<26} batch {batch} x {r['frames']} frames: {r['frames_per_s']:8.1f} frames/s, "
            f"{r['step_s']:6.2f} s/step, {r['flops_per_s'] / 1e9:8.1f} GFLOP/s = {mfu:5.1%} of peak"
        )
        if args.device == "cpu" and name in TARGETS:
            ok = ok and mfu >= TARGETS[name]
    if args.device == "cpu":  # the same preset with its per-frame kernels as 3D convolutions, interleaved
        name = "tokenize.tiny.yaml"
        config, batch = REPO / "config" / name, preset_batch(REPO / "config" / name)
        as_2d, as_3d = [], []
        for _ in range(2):
            as_2d.append(measure(config, batch, 3 * args.steps, args.device)["frames_per_s"])
            with as_conv3d():
                as_3d.append(measure(config, batch, 3 * args.steps, args.device)["frames_per_s"])
        print(f"  {name}, per-frame kernels as 2D conv {max(as_2d):.1f} frames/s, as Conv3d {max(as_3d):.1f} "
              f"frames/s (2D / 3D = {max(as_2d) / max(as_3d):.2f})")
    targets = ", ".join(f"{n} >= {t:.0%}" for n, t in TARGETS.items())
    print(f"targets met ({targets} of peak)" if ok else f"TARGET MISSED ({targets} of peak)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
