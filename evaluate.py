"""Evaluate a trained Genie on held-out levels: a JSON report, PNG plots and a side-by-side GIF.

    python evaluate.py --checkpoint runs/genie.tiny/checkpoints/last.ckpt \\
        --tokenizer_checkpoint runs/tokenizer.tiny/checkpoints/last.ckpt --out eval/tiny

Writes `<out>/report.json` (see `genie.evaluation` for every number), `confusion.png`
(latent x true action), `rollout_psnr.png` (PSNR by horizon with the copy-frame-0 baseline),
`samples.gif` (real | reconstruction | rollout from frame 0) and, with the control probe,
`control.png` (each action held from the first two level starts, a row each). FVD is computed
only with `--i3d <i3d_torchscript.pt>` (local weights; nothing is downloaded) and reported as
not computed otherwise.

Without `--checkpoint` it evaluates the tokenizer alone, on `--clips` held-out clips of
`--clip_frames` frames: `<out>/tokenizer_report.json` (PSNR, SSIM, code usage and perplexity,
and the average-pooling baselines a tokenizer must beat) and `tokenizer_grid.png` (real frames
above their reconstructions, 3x upscaled).

    python evaluate.py --tokenizer_checkpoint runs/tokenizer.tiny/checkpoints/last.ckpt --out eval/tokenizer
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from genie import maskgit
from genie.action import LatentAction
from genie.checkpoints import CheckpointError
from genie.control import EFFECTIVE_GROUPS, compare, game_probe, group_contingency, probe_grid, world_probe
from genie.data import ClipDataset, VideoDataModule, to_clip, to_frames, to_video
from genie.dynamics import DynamicsModel
from genie.evaluation import RENDERS, Evaluator, evaluate_tokenizer, fvd
from genie.media import save_png, tile, upscale, write_video
from genie.metrics import nmi_from_contingency
from genie.plots import confusion_plot, horizon_plot
from genie.probe import action_probes, collect, group_table
from genie.record import PROCGEN_ACTIONS
from genie.tokenizer import VideoTokenizer
from genie.world import load_world


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="genie.py fit checkpoint (LAM + dynamics); without it, the tokenizer alone")
    p.add_argument("--tokenizer_checkpoint", required=True, help="the tokenizer it was trained on")
    p.add_argument("--root", default="./data", help="data root of sample.py / split.py")
    p.add_argument("--env_name", default="Coinrun")
    p.add_argument("--split", default="test", choices=("val", "test"), help="held-out levels (default: test)")
    p.add_argument("--clips", type=int, default=64, help="clips evaluated, spread evenly over the split")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--clip_frames", type=int, default=4, help="frames per clip when evaluating the tokenizer alone")
    p.add_argument("--horizon", type=int, help="frames per rollout (default: the models' max_frames - 1)")
    p.add_argument("--steps", type=int, default=maskgit.STEPS, help="MaskGIT rounds per frame")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", default="tokens", choices=RENDERS,
                   help="generated frames decoded from their sampled tokens (Genie) or from each token's expected "
                        "code under the model's distribution (the next frames are still predicted from the tokens)")
    p.add_argument("--shift_pick", choices=("mean", "mode"),
                   help="a scroll model's greedy shift: the predicted mean or the most likely value "
                        "(default: the checkpoint's `dynamics.shift_pick`)")
    p.add_argument("--probe_levels", type=int, default=32,
                   help="level starts of the split for the control probe (0: no probe)")
    p.add_argument("--probe_frames", type=int, default=16, help="frames each action is held in the control probe")
    p.add_argument("--probe_warmup", type=int, default=0,
                   help="random steps into each level before the control probe starts (0: from the level's first frame)")
    p.add_argument("--probe_clips", type=int, default=512,
                   help="clips of the train split (and as many of the evaluated split) for the action probes (0: none)")
    p.add_argument("--classifier_steps", type=int, default=1500,
                   help="training steps of the inverse-dynamics classifier, the action probes' ceiling")
    p.add_argument("--device", default="cpu")
    p.add_argument("--i3d", help="local TorchScript I3D (i3d_torchscript.pt) for FVD; without it FVD is not computed")
    p.add_argument("--out", default="eval", help="output folder")
    args = p.parse_args(argv)
    for name in ("clips", "batch_size", "clip_frames", "steps", "probe_frames"):  # checked before any work
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("probe_levels", "probe_warmup", "probe_clips", "classifier_steps"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0 (0: none), got {getattr(args, name)}")
    if args.horizon is not None and args.horizon < 1:
        p.error(f"--horizon must be >= 1, got {args.horizon}")
    if not args.temperature >= 0:
        p.error(f"--temperature must be >= 0 (0 is greedy), got {args.temperature}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"--out {args.out} is a file; the report needs a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    if not args.checkpoint:
        print(f"tokenizer PSNR {report['psnr']} dB, SSIM {report['ssim']}, codes used {report['codebook_usage']:.1%}, "
              f"perplexity {report['codebook_perplexity']}; average pooling 2x2 / 4x4 / 8x8: "
              f"{report['avg_pool_2x2_psnr']} / {report['avg_pool_4x4_psnr']} / {report['avg_pool_8x8_psnr']} dB")
        print(f"wrote {args.out}/tokenizer_report.json, tokenizer_grid.png")
        return 0
    d, t = report["dynamics"], report["tokenizer"]
    print(f"tokenizer PSNR {t['psnr']} dB, SSIM {t['ssim']}; teacher-forced PSNR {d['teacher_forced_psnr']} dB; "
          f"rollout PSNR by t {d['rollout_psnr_by_horizon']}; NMI {report['lam']['nmi_true_actions']}")  # fmt: skip
    k = d["teacher_forced_tokens"]
    print(f"teacher-forced tokens: {k['accuracy']:.1%} right; of the {k['changed_share']:.1%} that change, "
          f"{k['changed_accuracy']:.1%} right and {k['changed_copied']:.1%} copied")  # fmt: skip
    print(f"wrote {args.out}/report.json, confusion.png, rollout_psnr.png, samples.gif"
          + (", control.png" if "control" in report else ""))
    return 0


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    if not args.checkpoint:
        return run_tokenizer(args, start)
    detector = load_i3d(args.i3d, args.device) if args.i3d else None  # before the work whose FVD it is
    world = load_world(args.checkpoint, args.tokenizer_checkpoint, args.device,
                       render=args.render)  # checks they belong together
    lam = LatentAction.from_checkpoint(args.checkpoint, map_location=args.device).to(args.device)
    dynamics: DynamicsModel = world.dynamics
    if args.shift_pick:
        if not dynamics.scroll:
            raise ValueError(f"--shift_pick: {args.checkpoint} has no scroll head (dynamics.scroll: 0)")
        dynamics.shift_pick = args.shift_pick
    horizon = args.horizon or min(dynamics.max_frames, lam.max_frames) - 1
    dm = VideoDataModule(args.root, args.env_name, horizon + 1, args.batch_size, num_workers=0, eval_clips=args.clips)
    names = dm.metadata.get("action_names")
    loader = dm.test_dataloader() if args.split == "test" else dm.val_dataloader()
    if len(loader.dataset) == 0:
        raise ValueError(f"the {args.split} split of {dm.dir} has no clip of {horizon + 1} frames")
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    true_actions = len(names) if names else PROCGEN_ACTIONS
    ev = Evaluator(world.tokenizer, lam, dynamics, horizon=horizon, num_true_actions=true_actions,
                   steps=args.steps, temperature=args.temperature, generator=generator,
                   action_source=world.action_source, render=args.render)  # fmt: skip
    real_videos, fake_videos = [], []
    for batch in tqdm(loader, desc=f"evaluating {args.split}", unit="batch", disable=None):
        clip = to_clip(batch._replace(frames=batch.frames.to(args.device), actions=batch.actions.to(args.device)))
        ev.update(clip.video, clip.actions)
        if args.i3d:
            real_videos.append(clip.video.cpu())
            fake_videos.append(ev.last_rollout.cpu())
    report = ev.report()
    if names:
        table = group_contingency(np.array(report["lam"]["contingency"]), names)
        report["lam"]["nmi_effective_groups"] = round(float(nmi_from_contingency(torch.from_numpy(table))), 4)
        report["lam"]["effective_groups"] = list(EFFECTIVE_GROUPS)
    if args.probe_clips > 0 and names:
        report["probe"] = _action_probes(args, lam, dm, names)
    probe_video = None
    if args.probe_levels > 0:
        report["control"], probe_video = _control_probe(args, world, dm, names)
    report["fvd"] = _fvd(detector, args.i3d, real_videos, fake_videos, args.device)
    report["setup"] = {**{k: v for k, v in vars(args).items() if k != "out"}, "horizon": horizon,
                       "clip_frames": horizon + 1, "seconds": round(time.perf_counter() - start, 1),
                       "torch": torch.__version__}  # fmt: skip
    if dynamics.scroll:
        report["setup"]["shift_pick"] = dynamics.shift_pick
    out = _write_report(report, Path(args.out), "report.json")
    confusion_plot(np.array(report["lam"]["contingency"]), out / "confusion.png", names)
    d = report["dynamics"]
    curves = {
        f"rollout, {'recorded' if world.action_source == 'recorded' else 'inferred latent'} actions":
            d["rollout_psnr_by_horizon"],
        "copy frame 0 (baseline)": d["copy_first_frame_psnr_by_horizon"],
        "copy frame 0 through the tokenizer (baseline)": d["copy_first_frame_tokens_psnr_by_horizon"],
    }
    horizon_plot(curves, out / "rollout_psnr.png")
    if probe_video is not None:  # each action held from the first level starts, a row each
        save_png(out / "control.png", probe_grid(probe_video))
    rows = [tile(example) for example in ev.examples]  # each: real | reconstruction | rollout
    write_video(out / "samples.gif", upscale(np.concatenate(rows, axis=1), 3), fps=4)
    return report


def _control_probe(args: argparse.Namespace, world, dm: VideoDataModule,
                   names: list[str] | None) -> tuple[dict, torch.Tensor]:  # fmt: skip
    """`genie.control`: each action held from the split's level starts, in the game and in the model.
    Returns the summary and the model's frames `(A L T+1 c H W)`."""
    seeds = sorted(json.loads((dm.dir / "splits.json").read_text())["level_seeds"][args.split])[: args.probe_levels]
    if not seeds or not names:
        raise ValueError(f"the control probe needs level seeds and action names in {dm.dir}")
    print(f"control probe: {len(seeds)} level starts (+ {args.probe_warmup} random steps) x {len(names)} game actions x {args.probe_frames} frames")
    skip = dm.metadata.get("frame_skip", 1)  # the game steps as the data was recorded
    game, starts = game_probe(dm.metadata["env_name"], seeds, names, args.probe_frames,
                              dm.metadata.get("distribution_mode", "hard"), frame_skip=skip,
                              warmup=args.probe_warmup)  # fmt: skip
    world.steps, world.temperature = args.steps, args.temperature
    world.generator = torch.Generator(device=args.device).manual_seed(args.seed)
    images = to_video(torch.from_numpy(starts)[:, None])[:, :, 0].to(args.device)  # (L c H W)
    model, video = world_probe(world, images, args.probe_frames)
    if world.action_source == "recorded":
        model["actions"] = names
    summary = {"levels": len(seeds), "frames": args.probe_frames, "frame_skip": skip, "warmup": args.probe_warmup,
               "game": game, "model": model,
               **compare(game, model)}  # fmt: skip
    return summary, video


def _action_probes(args: argparse.Namespace, lam: LatentAction, dm: VideoDataModule, names: list[str]) -> dict:
    """`genie.probe`: latent action -> effective group, against a supervised inverse-dynamics ceiling."""
    t = lam.max_frames
    train = ClipDataset(dm.dir / "train", t)
    held = ClipDataset(dm.dir / args.split, t, stride=t)  # non-overlapping clips
    n = args.probe_clips
    rng = np.random.default_rng(args.seed)
    train_clips = rng.choice(len(train), size=min(n, len(train)), replace=False)
    held_clips = np.linspace(0, len(held) - 1, min(n, len(held))).round().astype(np.int64)
    print(f"action probes: {len(train_clips)} train / {len(held_clips)} {args.split} clips of {t} frames")
    groups_of = group_table(names)
    data = [collect(lam, ds, clips, groups_of, args.batch_size, args.device)
            for ds, clips in ((train, train_clips), (held, held_clips))]  # fmt: skip
    return action_probes(*data, lam.num_actions, args.classifier_steps, args.seed)


def run_tokenizer(args: argparse.Namespace, start: float) -> dict:
    tokenizer = VideoTokenizer.from_checkpoint(args.tokenizer_checkpoint, map_location=args.device).to(args.device)
    dm = VideoDataModule(args.root, args.env_name, args.clip_frames, args.batch_size, num_workers=0,
                         eval_clips=args.clips)  # fmt: skip
    loader = dm.test_dataloader() if args.split == "test" else dm.val_dataloader()
    if len(loader.dataset) == 0:
        raise ValueError(f"the {args.split} split of {dm.dir} has no clip of {args.clip_frames} frames")
    videos = (to_clip(b).video.to(args.device) for b in tqdm(loader, desc=f"tokenizer on {args.split}", disable=None))
    report, grid = evaluate_tokenizer(tokenizer, videos)
    report["setup"] = {**{k: v for k, v in vars(args).items() if k not in ("out", "checkpoint")},
                       "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__}  # fmt: skip
    out = _write_report(report, Path(args.out), "tokenizer_report.json")
    rows = rearrange(to_frames(grid), "r n h w c -> (r h) (n w) c").numpy()  # real row over reconstruction row
    save_png(out / "tokenizer_grid.png", upscale(rows, 3))
    return report


def _write_report(report: dict, out: Path, name: str) -> Path:
    """`report` as `out/name`, written atomically (temp file, then rename)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.{os.getpid()}"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out / name)
    return out


def load_i3d(path: str, device: str) -> torch.nn.Module:
    """The TorchScript I3D at `path`, or one error line saying why it cannot be used."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no I3D detector at {path}")
    try:
        return torch.jit.load(path, map_location=device).eval()
    except (RuntimeError, ValueError) as e:  # not a TorchScript archive (a zip with code and constants)
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]
        raise ValueError(f"--i3d {path} is not a TorchScript I3D (i3d_torchscript.pt): {first}") from None


def _fvd(detector: torch.nn.Module | None, path: str | None, real: list[torch.Tensor], fake: list[torch.Tensor],
         device: str) -> dict:  # fmt: skip
    if detector is None:
        return {"computed": False, "reason": "no local I3D weights given (--i3d); nothing is downloaded"}
    with torch.no_grad():
        value = fvd(detector, torch.cat(real).to(device), torch.cat(fake).to(device))
    return {"computed": True, "value": round(value, 2), "detector": path, "videos": sum(len(r) for r in real)}


if __name__ == "__main__":
    sys.exit(main())
