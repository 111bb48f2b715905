"""Tokenizer learning per CPU-minute: held-out PSNR against training minutes, presets side by side.

    python bench/bench_tokenizer_curve.py --configs config/tokenize.tiny.magvit.yaml \\
        config/tokenize.tiny.yaml config/tokenize.tiny.lfq.yaml --minutes 20 4 4 --out bench/results/curve

Each preset (a `tokenizer.py` YAML) is trained exactly as `tokenizer.py fit` would train it
(its network, data clip length and batch size, AdamW and warm-up/cosine schedule over its
`trainer.max_steps`), but the presets take turns in one process: each trains for `--chunk`
seconds (shorter budgets: shorter turns, in proportion), then the next, until each has trained its `--minutes` (one value for all, or one per
preset: a preset that is compared with the first one's final PSNR needs only a fraction of its
time). A shared machine's speed drifts
by tens of percent within minutes; taking turns gives every preset the same share of it, so
their curves compare as ratios. Only training steps are timed; every `--eval_every` seconds
of a preset's training it is scored on the same held-out clips of the test split (levels
never trained on): PSNR of reconstructions, and code usage and perplexity.

Writes `<out>.csv` (preset, step, train_seconds, psnr, code_usage, perplexity) and
`<out>.json` (the settings, the curves, and for each preset after the first, how much sooner
it reached the PSNR the first preset had at the end), and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.data import VideoDataModule, to_clip  # noqa: E402
from genie.lit.fast import adamw  # noqa: E402
from genie.lit.schedule import warmup_cosine  # noqa: E402
from genie.metrics import codebook_usage, psnr  # noqa: E402
from genie.tokenizer import VideoTokenizer  # noqa: E402


@dataclass
class Run:
    """One preset being trained: network, optimizer, data stream and its curve so far."""

    name: str
    tokenizer: VideoTokenizer
    opt: torch.optim.Optimizer
    schedule: dict
    batches: object
    step: int = 0
    seconds: float = 0.0
    next_eval: float = 0.0
    curve: list[dict] = field(default_factory=list)


def parse_preset(spec: str) -> tuple[Path, dict]:
    """`path.yaml` or `path.yaml@key=value,key=value` (tokenizer arguments changed, YAML values)."""
    path, _, changes = spec.partition("@")
    pairs = (item.split("=", 1) for item in changes.split(",") if item)
    return Path(path), {k: yaml.safe_load(v) for k, v in pairs}


def build_run(spec: str, root: str, seed: int, name: str | None = None) -> Run:
    config, changes = parse_preset(spec)
    cfg = yaml.safe_load(config.read_text())
    torch.manual_seed(seed)
    tok = VideoTokenizer(**{**cfg["model"]["tokenizer"]["init_args"], **changes})
    m, d = cfg["model"], cfg["data"]
    lr = float(m.get("lr", 3e-4))
    opt = adamw(tok.parameters(), lr=lr, betas=tuple(m.get("betas", (0.9, 0.9))),
                weight_decay=float(m.get("weight_decay", 1e-4)))  # fmt: skip
    schedule = dict(lr=lr, min_lr=float(m.get("min_lr", lr)), warmup_steps=int(m.get("warmup_steps", 10_000)),
                    total_steps=int(cfg["trainer"]["max_steps"]))  # fmt: skip
    dm = VideoDataModule(root, d.get("env_name", "Coinrun"), d["num_frames"], d["batch_size"], num_workers=0)
    return Run(name or spec.replace("config/", ""), tok, opt, schedule, _forever(dm))


def _forever(dm: VideoDataModule):
    while True:
        yield from dm.train_dataloader()


def train_for(run: Run, seconds: float, grad_clip: float = 1.0) -> None:
    """Train `run` for about `seconds` of step time (whole steps)."""
    run.tokenizer.train()
    spent = 0.0
    while spent < seconds:
        video = to_clip(next(run.batches)).video  # loading is not timed: the trainer overlaps it
        start = time.perf_counter()
        for group in run.opt.param_groups:
            group["lr"] = warmup_cosine(run.step, **run.schedule)
        loss = run.tokenizer.compute_losses(video).loss
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.tokenizer.parameters(), grad_clip)
        run.opt.step()
        spent += time.perf_counter() - start
        run.step += 1
    run.seconds += spent


@torch.no_grad()
def evaluate(tok: VideoTokenizer, clips: torch.Tensor, batch: int = 16) -> dict:
    """Held-out PSNR (mean over frames), code usage and perplexity on `clips (n c t h w)`."""
    tok.eval()
    scores, indices = [], []
    for i in range(0, len(clips), batch):
        video = clips[i : i + batch]
        tokens = tok.tokenize(video)
        rec = tok.decode(tokens.codes).clamp(-1, 1)
        scores.append(psnr(rec, video).flatten())
        indices.append(tokens.indices.flatten())
    usage = codebook_usage(torch.cat(indices), tok.codebook_size)
    return {"psnr": torch.cat(scores).mean().item(), "code_usage": usage.fraction_used.item(),
            "perplexity": usage.perplexity.item()}  # fmt: skip


def heldout_clips(root: str, num_frames: int, n: int) -> torch.Tensor:
    dm = VideoDataModule(root, "Coinrun", num_frames, batch_size=n, num_workers=0, eval_clips=n)
    return to_clip(next(iter(dm.test_dataloader()))).video


def sooner(reference: list[dict], other: list[dict]) -> dict:
    """When `other` first reached the PSNR `reference` had at its last evaluation."""
    target = reference[-1]["psnr"]
    hit = next((p for p in other if p["psnr"] >= target), None)
    out = {"target_psnr": round(target, 2), "reference_seconds": reference[-1]["train_seconds"]}
    if hit is None:
        return {**out, "reached": False}
    secs = max(hit["train_seconds"], 1e-9)
    return {**out, "reached": True, "seconds": round(secs, 1), "speedup": round(out["reference_seconds"] / secs, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", required=True,
                   help="tokenizer.py YAMLs, each optionally with @key=value,... tokenizer changes; the first is the reference")
    p.add_argument("--names", nargs="*", help="a name per config (default: file stems)")
    p.add_argument("--minutes", type=float, nargs="+", default=[20.0], help="training minutes, for all or per preset")
    p.add_argument("--chunk", type=float, default=30.0, help="seconds a preset trains before the next")
    p.add_argument("--eval_every", type=float, default=60.0,
                   help="training seconds between evaluations of the longest preset (shorter ones: in proportion)")
    p.add_argument("--clips", type=int, default=64, help="held-out test clips scored")
    p.add_argument("--clip_frames", type=int, default=4, help="frames per held-out clip")
    p.add_argument("--root", default="./data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", type=Path, help="writes <out>.csv and <out>.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.names or [None] * len(args.configs)
    runs = [build_run(c, args.root, args.seed, n) for c, n in zip(args.configs, names)]
    clips = heldout_clips(args.root, args.clip_frames, args.clips)
    if len(args.minutes) not in (1, len(runs)):
        p.error(f"--minutes takes one value or one per config ({len(runs)})")
    budgets = [m * 60 for m in (args.minutes * len(runs) if len(args.minutes) == 1 else args.minutes)]
    t0 = time.perf_counter()
    print(f"{len(runs)} presets, {' / '.join(f'{b / 60:g}' for b in budgets)} min, {args.threads} threads, "
          f"{len(clips)} held-out clips of {args.clip_frames} frames", flush=True)  # fmt: skip
    while any(r.seconds < b for r, b in zip(runs, budgets)):
        for run, budget in zip(runs, budgets):
            if run.seconds >= budget:
                continue
            share = budget / max(budgets)  # shorter budgets train in shorter turns: all progress together
            train_for(run, min(args.chunk * share, budget - run.seconds, max(run.next_eval - run.seconds, 1.0)))
            if run.seconds >= run.next_eval or run.seconds >= budget:
                point = {"step": run.step, "train_seconds": round(run.seconds, 1), **evaluate(run.tokenizer, clips)}
                run.curve.append(point)
                run.next_eval += args.eval_every * share
                done = sum(min(r.seconds, b) for r, b in zip(runs, budgets)) / sum(budgets)
                wall = time.perf_counter() - t0
                print(f"[{done:5.1%} wall {wall / 60:5.1f} min, ETA {wall / max(done, 1e-9) * (1 - done) / 60:5.1f} min] "
                      f"{run.name:>24s} step {run.step:6d} {run.seconds / 60:6.2f} min  PSNR {point['psnr']:6.2f} dB  "
                      f"usage {point['code_usage']:.2f}  perplexity {point['perplexity']:7.1f}", flush=True)  # fmt: skip
    report = {"settings": {**{k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
                           "cpu_count": os.cpu_count()},  # fmt: skip
              "curves": {r.name: r.curve for r in runs},
              "sooner_than_reference": {r.name: sooner(runs[0].curve, r.curve) for r in runs[1:]}}  # fmt: skip
    print(json.dumps(report["sooner_than_reference"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{args.out}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["preset", "step", "train_seconds", "psnr", "code_usage", "perplexity"])
            w.writeheader()
            for r in runs:
                w.writerows({"preset": r.name, **pt} for pt in r.curve)
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
