"""Stage 2 benchmark: the LAM + dynamics training step and MaskGIT generation with/without the KV cache.

    python bench/bench_genie.py [--batch 1] [--frames 16] [--steps 2] [--device cpu|cuda] [--full]

Training: for each preset (config/genie.tiny.yaml and the App. F config/genie.yaml) it builds
the tokenizer (random weights, from the matching tokenize*.yaml), the LAM and the dynamics
model from the YAML, counts the FLOPs of one step (`torch.utils.flop_counter`: frozen
tokenization, LAM and dynamics forward + backward), times `--steps` steps including AdamW,
and divides by a large matmul measured in the same run (fp32 on CPU, bf16 on GPU).

Generation: one new frame after a 16-frame context (the dynamics model is built with room
for 17 frames), 25 MaskGIT steps, with and without the temporal KV cache. Target:
the cache >= 3x faster. On the CPU the App. F dynamics model (12 x 512) needs minutes per
uncached frame, so generation uses the tiny preset unless `--full` (or a GPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_tokenizer import _sync, matmul_peak  # noqa: E402

from genie.action import LatentAction  # noqa: E402
from genie.dynamics import DynamicsModel  # noqa: E402
from genie.lit.fast import adamw, compile_methods  # noqa: E402
from genie.tokenizer import VideoTokenizer  # noqa: E402

PRESETS = {"genie.tiny.yaml": "tokenize.tiny.yaml", "genie.yaml": "tokenize.yaml"}


def build(preset: str, max_frames: int | None = None):
    cfg = yaml.safe_load((REPO / "config" / preset).read_text())["model"]
    tok_cfg = yaml.safe_load((REPO / "config" / PRESETS[preset]).read_text())["model"]["tokenizer"]["init_args"]
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(**tok_cfg).eval().requires_grad_(False)
    clip = yaml.safe_load((REPO / "config" / preset).read_text())["data"]["num_frames"]  # as genie.py links it
    lam = LatentAction(**cfg["lam"]["init_args"], max_frames=clip)
    dynamics = DynamicsModel(tokenizer.codebook_size, lam.num_actions, max_frames or clip, **cfg["dynamics"]["init_args"])
    return tokenizer, lam, dynamics


def train_step(tokenizer, lam, dynamics, opt, video, autocast: bool) -> None:
    opt.zero_grad(set_to_none=True)
    with torch.autocast(video.device.type, dtype=torch.bfloat16, enabled=autocast):
        with torch.no_grad():
            tokens = tokenizer.tokenize(video).indices
        out = lam.compute_losses(video)
        loss = out.loss + dynamics.compute_losses(tokens, out.actions).loss
    loss.backward()
    opt.step()


def measure_training(preset: str, batch: int, frames: int, steps: int, device: str, compile: bool = False) -> dict:
    tokenizer, lam, dynamics = (m.to(device) for m in build(preset))
    params = [*lam.parameters(), *dynamics.parameters()]
    opt = adamw(params, lr=1e-5, betas=(0.9, 0.9), weight_decay=1e-4)
    frames = min(frames, lam.max_frames, dynamics.max_frames)  # the tiny preset trains on 6-frame clips
    video = torch.rand(batch, 3, frames, 64, 64, device=device) * 2 - 1
    autocast = device == "cuda"
    with FlopCounterMode(display=False) as counter:
        train_step(tokenizer, lam, dynamics, opt, video, autocast)
    flops = counter.get_total_flops()  # counted eagerly: the compiled step does the same math
    if compile:
        compile_methods(lam, "compute_losses")
        compile_methods(dynamics, "compute_losses")
    train_step(tokenizer, lam, dynamics, opt, video, autocast)  # warm-up (and compilation)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(tokenizer, lam, dynamics, opt, video, autocast)
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    fps = batch * frames / seconds
    tokens_per_frame = (64 // tokenizer.downsampling[1]) ** 2
    return {"frames_per_s": fps, "flops_per_s": flops / seconds, "step_s": seconds, "frames": frames,
            "tokens_per_frame": tokens_per_frame}  # fmt: skip


def measure_generation(preset: str, context: int, steps: int, device: str, reps: int) -> dict:
    _, _, dynamics = build(preset, max_frames=context + 1)
    dynamics.to(device).eval()
    tokens = torch.randint(0, dynamics.tok_vocab, (1, context, 16, 16), device=device)
    acts = torch.randint(0, dynamics.act_vocab, (1, context), device=device)
    result = {}
    for use_cache in (True, False):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            dynamics.generate(tokens, acts, steps=steps, use_cache=use_cache)  # warm-up
            _sync(device)
            start = time.perf_counter()
            for _ in range(reps):
                dynamics.generate(tokens, acts, steps=steps, use_cache=use_cache)
            _sync(device)
        result["cached" if use_cache else "uncached"] = reps / (time.perf_counter() - start)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1, help="clips per training step (App. F uses 36)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (App. F: 16)")
    p.add_argument("--steps", type=int, default=2, help="timed training steps")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--full", action="store_true", help="also time generation with the App. F dynamics model")
    args = p.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    peak = matmul_peak(args.device, dtype)
    print(f"device {args.device} ({torch.get_num_threads()} threads), matmul peak {peak / 1e9:,.0f} GFLOP/s ({dtype})")
    print("training step (frozen tokenizer + LAM + dynamics, forward + backward + AdamW):")
    for preset in PRESETS:
        r = measure_training(preset, args.batch, args.frames, args.steps, args.device)
        print(
            f"  {preset:<16} batch {args.batch} x {r['frames']} frames: {r['frames_per_s']:8.1f} frames/s, "
            f"{r['step_s']:6.2f} s/step, {r['flops_per_s'] / 1e9:8.1f} GFLOP/s = {r['flops_per_s'] / peak:5.1%} of peak"
        )
    print("generation (1 new frame after a 16-frame context, 25 MaskGIT steps, batch 1):")
    ok = True
    for preset in PRESETS if (args.full or args.device == "cuda") else ["genie.tiny.yaml"]:
        r = measure_generation(preset, context=16, steps=25, device=args.device, reps=3)
        speedup = r["cached"] / r["uncached"]
        print(
            f"  {preset:<16} cached {r['cached']:7.2f} frames/s, uncached {r['uncached']:7.2f} frames/s: "
            f"cache {speedup:4.1f}x faster"
        )
        ok = ok and speedup >= 3
    print("target met (cache >= 3x faster)" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
