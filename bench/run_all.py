"""Every benchmark in one run, one table: data, both training stages, play.

    python bench/run_all.py                                  # this CPU: small batches, minutes
    python bench/run_all.py --device cuda --compile          # a GPU at App. F batch sizes
    python bench/run_all.py ... --json results.json          # the rows, machine-readable too

Rows, measured side by side in one process against one peak (a large matmul, fp32 on CPU,
bf16 on GPU, measured at the start of the run):
  data      procgen stepping as sample.py does it, `sample.py` end to end, and the data module
            (bench_data.py; recorded into a temporary folder, deleted after);
  training  per stage and preset: frames/s, tokens/s (frames x token grid), achieved FLOP/s
            (FLOPs counted by torch.utils.flop_counter) and its ratio to the peak
            (bench_tokenizer.py, bench_genie.py; random clips, bf16 autocast on GPU);
  play      World.step frames/s at 25 MaskGIT steps, batch 1: tiny with and without the KV
            cache and with compiled rounds (CUDA graphs on GPU), App. F at its 16-frame
            context (bench_play.py).
The issue-#6 targets are for an H100 at the App. F configs (genie.yaml / tokenize.yaml):
stage-2 training >= 40 % of peak, tokenizer >= 30 %, play >= 30 frames/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import bench_data  # noqa: E402
import bench_genie  # noqa: E402
import bench_play  # noqa: E402
import bench_tokenizer  # noqa: E402

TARGETS = {  # (stage, preset) -> (what, threshold) on an H100
    ("tokenizer", "tokenize.yaml"): ("% of peak", 0.30),
    ("stage 2", "genie.yaml"): ("% of peak", 0.40),
    ("play", "App. F, compiled"): ("frames/s", 30.0),
}


class Table:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, stage: str, preset: str, measure: str, value: float, unit: str, of_peak: float | None = None):
        row = {"stage": stage, "preset": preset, "measure": measure, "value": value, "unit": unit, "of_peak": of_peak}
        self.rows.append(row)
        print(f"  {stage:<10} {preset:<26} {measure:<34} {_num(value):>12} {unit}", flush=True)

    def print(self, header: str) -> None:
        print(f"\n{header}")
        print(f"{'stage':<10} {'preset':<26} {'measure':<34} {'value':>12} {'unit':<9} {'% peak':>7}  target")
        for r in self.rows:
            peak = f"{r['of_peak']:.1%}" if r["of_peak"] is not None else ""
            what, threshold = TARGETS.get((r["stage"], r["preset"].split(" b")[0]), ("", None))
            target = ""
            if threshold is not None and r["measure"] in ("training step", "World.step"):
                got = r["of_peak"] if what == "% of peak" else r["value"]
                shown = f"{threshold:.0%}" if what == "% of peak" else f"{threshold:g} frames/s"
                target = f">= {shown} on an H100: {'met' if got >= threshold else 'not met'} here"
            print(f"{r['stage']:<10} {r['preset']:<26} {r['measure']:<34} {_num(r['value']):>12} {r['unit']:<9} "
                  f"{peak:>7}  {target}")  # fmt: skip


def _num(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"


def data_rows(table: Table, levels: int, timeout: int, workers: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench_all_"))
    try:
        raw = bench_data.raw_levels(workers, max(levels // 2, 1), timeout)
        table.add("data", "procgen", f"raw stepping, {workers} processes", raw, "frames/s")
        e2e = bench_data.sample_end_to_end(tmp, workers, levels, timeout)
        table.add("data", "procgen", f"sample.py end to end ({levels} levels)", e2e, "frames/s")
        subprocess.run([sys.executable, "split.py", "--root", str(tmp), "--quiet"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        load = bench_data.loader(tmp, batches=300)  # shorter windows mostly time the start-up
        table.add("data", "VideoDataModule", "16-frame clips x 32, 1 worker", load, "frames/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def training_rows(table: Table, args: argparse.Namespace, peak: float) -> None:
    tokenizers = (("tokenize.tiny.yaml", args.tiny_batch), ("tokenize.tiny.magvit.yaml", args.tiny_batch),
                  ("tokenize.yaml", args.tokenizer_batch))  # fmt: skip
    for preset, batch in tokenizers:
        batch = batch or bench_tokenizer.preset_batch(REPO / "config" / preset)
        r = bench_tokenizer.measure(REPO / "config" / preset, batch, args.steps, args.device, args.compile)
        _training(table, "tokenizer", preset, batch, r, peak)
    for preset, batch in (("genie.tiny.yaml", args.tiny_batch), ("genie.yaml", args.genie_batch)):
        batch = batch or bench_tokenizer.preset_batch(REPO / "config" / preset)
        r = bench_genie.measure_training(preset, batch, 16, args.steps, args.device, args.compile)
        _training(table, "stage 2", preset, batch, r, peak)


def _training(table: Table, stage: str, preset: str, batch: int, r: dict, peak: float) -> None:
    name = f"{preset} b{batch}x{r['frames']}"
    table.add(stage, name, "training step", r["frames_per_s"], "frames/s", r["flops_per_s"] / peak)
    table.add(stage, name, "  tokens", r["frames_per_s"] * r["tokens_per_frame"], "tokens/s")
    table.add(stage, name, "  achieved", r["flops_per_s"] / 1e9, "GFLOP/s")


def play_rows(table: Table, args: argparse.Namespace) -> None:
    tiny = {"tiny": {"compile": False}, "tiny, compiled": {"compile": True}}  # timed in turn: a fair ratio
    full = {"App. F": {"compile": False}, "App. F, compiled": {"compile": True}}
    if args.no_compile_play:
        tiny, full = dict(list(tiny.items())[:1]), dict(list(full.items())[:1])
    rows = bench_play.measure_variants("genie.tiny.yaml", tiny, args.play_frames, 25, args.device, repeats=3)
    rows["tiny, no KV cache"] = bench_play.measure("genie.tiny.yaml", max(2, args.play_frames // 4), 25, args.device,
                                                   use_cache=False)  # fmt: skip
    rows |= bench_play.measure_variants("genie.yaml", full, args.full_play_frames, 25, args.device)
    for name, r in rows.items():
        table.add("play", name, "World.step", r["fps"], "frames/s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    gpu = torch.cuda.is_available()
    p.add_argument("--device", default="cuda" if gpu else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the training steps' loss functions")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per row")
    p.add_argument("--tiny-batch", type=int, help="clips per step of the tiny presets (default: each preset's own)")
    p.add_argument("--tokenizer-batch", type=int, help="clips per step, tokenize.yaml (default: 48 GPU / 2 CPU)")
    p.add_argument("--genie-batch", type=int, help="clips per step, genie.yaml (default: 36 GPU / 1 CPU)")
    p.add_argument("--play-frames", type=int, default=24, help="timed frames of the tiny play rows")
    p.add_argument("--full-play-frames", type=int, help="timed frames of the App. F play rows (default 32 GPU / 1 CPU)")
    p.add_argument("--levels", type=int, default=200, help="levels recorded by the data rows (0: skip them)")
    p.add_argument("--timeout", type=int, default=1000, help="steps per level in the data rows (App. F: 1000)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="sample.py processes")
    p.add_argument("--no-compile-play", action="store_true", help="skip the compiled play rows")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    args.tokenizer_batch = args.tokenizer_batch or (48 if cuda else 2)
    args.genie_batch = args.genie_batch or (36 if cuda else 1)
    args.full_play_frames = args.full_play_frames or (32 if cuda else 1)

    dtype = torch.bfloat16 if cuda else torch.float32
    peak = bench_tokenizer.matmul_peak(args.device, dtype)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {os.cpu_count()} cores"
    header = (f"{name}; torch {torch.__version__}; matmul peak {peak / 1e12:.2f} TFLOP/s ({dtype}); "
              f"compile={args.compile}; {time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    print(header, flush=True)
    table = Table()
    start = time.perf_counter()
    if args.levels:
        data_rows(table, args.levels, args.timeout, args.workers)
    torch.set_grad_enabled(True)
    training_rows(table, args, peak)
    with torch.no_grad():
        play_rows(table, args)
    table.print(header + f"; {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "peak_flops": peak, "rows": table.rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
