"""How much of the next-frame gap a scroll alone can close: the best global shift of each frame.

    python scripts/shift_oracle.py --root ./data/unseen.skip8 --tokenizer_checkpoint res/tokenizer.ckpt \
        --json out.json

On the clips `evaluate.py` scores (the same `--clips` spread over the split, `--frames` long), every
consecutive pair (frame t, frame t+1) gets three next-frame guesses made from frame t:

- `copy`: frame t itself (`evaluate.py`'s copy-last-frame baseline);
- `best_shift`: frame t moved by the whole-pixel shift (|dx|, |dy| <= `--max_shift`, edges
  repeated) that is closest to the real frame t+1. An oracle: it looks at the answer. It is the
  most a model that only scrolls the scene (CoinRun's camera follows the agent) could reach;
- with `--tokenizer_checkpoint`, the same two passed through the tokenizer (tokenized, decoded),
  and frame t+1's own reconstruction (a perfect dynamics model), as the dynamics model's frames are;
- with `--checkpoint` of a `genie.py fit` run with `dynamics.scroll` (and its tokenizer), the shift that
  model's head predicts from the previous frame's tokens, the action (the LAM's, or the recorded one
  for a recorded-action run) and the shift into the previous frame, picked as generation does at
  temperature 0 (`mean`: the distribution's mean, rounded) or as its most likely value (`mode`); the
  *decoded* previous frame moved by it, through the tokenizer (a rollout's moved frame). Also the
  oracle's shift applied the same way (`best_shift_decoded`), and each pick's accuracy per axis, share
  off by more than 2 px, and share moving the wrong way (`shift_errors`). The
  most a model that copies its moved frame can reach with that head;
- with `--checkpoint` and `--rollouts`, greedy rollouts from each clip's frame 0 over the whole clip
  (as `evaluate.py`'s, with the LAM's actions and `--steps` MaskGIT rounds), once with the shifts
  the head picks (`mode`) and once with the true shifts between the real frames forced on it:
  PSNR at t = 1..T-1 of each, and of the copy of frame 0 through the tokenizer. Tells whether a
  rollout loses to the copy because of the head's shifts or because of the tokens it renders;
- with `--regions R`, `best_shift_RxR`: the same oracle choosing a shift for each of R x R equal
  tiles of the frame on its own (the agent and the scene behind it can move differently; the
  camera follows the agent, so one global shift moves the agent wrongly). A looser bound: with
  small tiles it also matches texture that did not move.

The report also gives the share of pairs whose global best shift is not (0, 0) and the mean |dx|, |dy|.
PSNR as `evaluate.py` reports it (per frame, identical frames at `PSNR_CAP`, mean over pairs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from einops import rearrange, reduce, repeat
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie import maskgit  # noqa: E402
from genie.data import VideoDataModule, to_clip  # noqa: E402
from genie.evaluation import frame_psnr  # noqa: E402
from genie.motion import move  # noqa: E402
from genie.scroll import greedy_shift  # noqa: E402
from genie.record import write_json  # noqa: E402


def best_shift(
    before: torch.Tensor, after: torch.Tensor, max_shift: int, regions: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """For frame pairs `(n c H W)`: each `before` moved by the whole-pixel shift closest (MSE) to
    its `after`, chosen for each of `regions x regions` equal tiles on its own (1: one shift for
    the frame), `(n c H W)`, and the shifts `(n r r 2)` as (dx, dy)."""
    n, _, H, W = before.shape
    if H % regions or W % regions:
        raise ValueError(f"{regions} x {regions} regions do not tile a {H}x{W} frame")

    def tile_error(guess: torch.Tensor) -> torch.Tensor:  # (n r r)
        return reduce((guess - after).square(), "n c (r y) (q x) -> n r q", "mean", r=regions, q=regions)

    best, err = before.clone(), tile_error(before)  # the copy, shift (0, 0)
    shifts = torch.zeros(n, regions, regions, 2, dtype=torch.long)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            moved = move(before, torch.tensor([[dx, dy]]).expand(n, 2))
            e = tile_error(moved)
            better = e < err  # (n r r)
            err = torch.where(better, e, err)
            pixels = repeat(better, "n r q -> n 1 (r y) (q x)", y=H // regions, x=W // regions)
            best = torch.where(pixels, moved, best)
            shifts[better] = torch.tensor([dx, dy])
    return best, shifts


def load_scroll_model(checkpoint: str, tok) -> tuple:
    """The dynamics model (attached to `tok`) and LAM of a `genie.py fit` checkpoint; no LAM for a
    recorded-action run."""
    from genie.action import LatentAction
    from genie.checkpoints import load_network, read_checkpoint
    from genie.dynamics import DynamicsModel

    ckpt = read_checkpoint(checkpoint)
    dyn = load_network(DynamicsModel, checkpoint, "dynamics", ckpt=ckpt).eval()
    if not dyn.scroll:
        raise ValueError(f"{checkpoint}: its dynamics model has no scroll head (dynamics.scroll: 0)")
    lam = None if ckpt.get("action_source") == "recorded" else LatentAction.from_checkpoint(checkpoint).eval()
    return dyn.attach(tok), lam


@torch.no_grad()
def predicted_shifts(dyn, lam, tok, clips: list, score) -> dict:
    """The shifts the scroll model `dyn`'s head predicts for every pair of frames in `clips` (in
    the order of `main`'s pairs) from the actions of `lam` (None: the clips' recorded actions), the
    decoded previous frame moved by them, through the tokenizer `tok`, scored (`score`) against the
    next frames; each pick's accuracy against the true shifts."""
    picks = {"mean": [], "mode": [], "true": []}
    moved = {"mean": [], "mode": [], "best_shift_decoded": []}
    for clip in tqdm(clips, desc="predicted shifts", unit="batch", disable=None):
        tokens = tok.tokenize(clip.video).indices  # (b T h w)
        acts = clip.actions[:, :-1] if lam is None else lam.encode(clip.video)[0].actions  # (b T-1)
        frames = dyn.scroller.pixels(tokens)  # (b T c H W) decoded, as a rollout has them
        real = rearrange(clip.video, "b c t h w -> b t c h w")
        real_shifts = dyn.scroller.shifts(real)  # (b T-1 2) as training's teacher
        for t in range(tokens.shape[1] - 1):  # the pair t -> t+1
            before = real_shifts[:, t - 1] if t else None
            logits = dyn.shift_logits(tokens[:, t], acts[:, t], before).float()  # (b 2 n)
            chosen = {how: greedy_shift(logits, how) - dyn.scroll for how in ("mean", "mode")}
            for name, shift in chosen.items():
                picks[name].append(shift)
                moved[name].append(dyn.scroller.move(frames[:, t], shift, tokens[:, t]))
            picks["true"].append(real_shifts[:, t])
            moved["best_shift_decoded"].append(dyn.scroller.move(frames[:, t], real_shifts[:, t], tokens[:, t]))

    def in_order(parts: list[torch.Tensor]) -> torch.Tensor:  # per batch, t-major -> the pairs' (b t) order
        out, i, T1 = [], 0, clips[0].video.shape[2] - 1
        for clip in clips:
            out.append(rearrange(torch.stack(parts[i : i + T1], 1), "b t ... -> (b t) ..."))
            i += T1
        return torch.cat(out)

    report = {}
    for name, parts in moved.items():
        report[f"{name}_psnr"] = score(tok.decode(in_order(parts)[:, None]).float().clamp(-1, 1)[:, :, 0])
    true = in_order(picks.pop("true"))  # (n 2) the shifts the model was trained to predict
    for name, parts in picks.items():
        for what, share in shift_errors(in_order(parts), true).items():
            report[f"{name}_{what}_dx_dy"] = share
    return report


def shift_errors(pick: torch.Tensor, true: torch.Tensor) -> dict[str, list[float]]:
    """How picked shifts `(n 2)` miss the `true` ones, per axis (dx, dy): `accuracy`, the share
    right; `far`, the share off by more than 2 px; `wrong_way`, of the pairs that move on that
    axis, the share picked moving the other way."""
    moving = true != 0  # (n 2)
    wrong_way = ((pick * true < 0) & moving).sum(0) / moving.sum(0).clamp(min=1)
    shares = {"accuracy": (pick == true).float().mean(0), "far": ((pick - true).abs() > 2).float().mean(0),
              "wrong_way": wrong_way.float()}  # fmt: skip
    return {what: [round(float(v), 3) for v in share] for what, share in shares.items()}


class ForcedShifts:
    """A stand-in for `dyn.shift_logits` during one rollout: certain of `shifts (b n 2)` (pixels), the
    k-th for the k-th frame generated, whatever the frame, action or shift before."""

    def __init__(self, dyn, shifts: torch.Tensor):
        self.classes, self.n, self.k = shifts + dyn.scroll, 2 * dyn.scroll + 1, 0

    def __call__(self, frame, act, before, known=None) -> torch.Tensor:
        logits = torch.full((*self.classes.shape[:1], 2, self.n), -1e4)
        logits.scatter_(-1, self.classes[:, self.k, :, None], 0.0)
        self.k += 1
        return logits


@torch.no_grad()
def rollouts(dyn, lam, tok, clips: list, steps: int) -> dict:
    """Greedy rollouts of the scroll model `dyn` from each clip's frame 0 with the actions of `lam`
    (None: the recorded ones), once with the shifts its head picks (`mode`) and once with the true
    shifts forced (`ForcedShifts`); PSNR per step t = 1..T-1 of each and of the copy of frame 0,
    all through the tokenizer `tok`."""
    pick = dyn.shift_pick
    dyn.shift_pick = "mode"
    sums: dict[str, torch.Tensor] = {}
    n = 0
    try:
        for clip in tqdm(clips, desc="rollouts", unit="batch", disable=None):
            tokens = tok.tokenize(clip.video).indices  # (b T h w)
            acts = clip.actions[:, :-1] if lam is None else lam.encode(clip.video)[0].actions  # (b T-1)
            real = clip.video[:, :, 1:]  # (b c T-1 H W)
            true = dyn.scroller.shifts(rearrange(clip.video, "b c t h w -> b t c h w").float())  # (b T-1 2)
            first = tok.decode(tokens[:, :1]).float().clamp(-1, 1)  # (b c 1 H W)
            pixels = {"copy_first_frame": first.expand_as(real)}
            gen = dyn.generate(tokens[:, :1], acts, steps=steps, temperature=0.0, num_frames=acts.shape[1])
            pixels["predicted_shift"] = tok.decode(gen).float().clamp(-1, 1)[:, :, 1:]  # as evaluate.py decodes
            dyn.shift_logits = ForcedShifts(dyn, true)
            try:
                gen = dyn.generate(tokens[:, :1], acts, steps=steps, temperature=0.0, num_frames=acts.shape[1])
            finally:
                del dyn.shift_logits  # the model's own head again
            pixels["true_shift"] = tok.decode(gen).float().clamp(-1, 1)[:, :, 1:]
            for name, video in pixels.items():
                sums[name] = sums.get(name, 0) + frame_psnr(video, real).sum(0)  # (T-1)
            n += real.shape[0]
    finally:
        dyn.shift_pick = pick
    return {f"{name}_psnr": [round(float(v), 3) for v in total / n] for name, total in sums.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="data root of sample.py / split.py")
    p.add_argument("--env_name", default="Coinrun")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--clips", type=int, default=64, help="clips, spread evenly over the split (as evaluate.py)")
    p.add_argument("--frames", type=int, default=6, help="frames per clip (as evaluate.py with 6-frame models)")
    p.add_argument("--max_shift", type=int, default=8, help="largest |dx|, |dy| tried, in pixels")
    p.add_argument("--regions", type=int, nargs="*", default=[], metavar="R",
                   help="also the oracle that shifts each of R x R tiles on its own (e.g. 2 4)")
    p.add_argument("--tokenizer_checkpoint", help="also score the guesses through this tokenizer")
    p.add_argument("--checkpoint", help="also the shifts a scroll dynamics model predicts (needs --tokenizer_checkpoint)")
    p.add_argument("--rollouts", action="store_true",
                   help="with --checkpoint: rollouts from frame 0 with the head's shifts and with the true ones")
    p.add_argument("--steps", type=int, default=maskgit.STEPS, help="MaskGIT rounds per frame in --rollouts")
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    if args.clips < 1 or args.frames < 2 or args.max_shift < 0 or any(r < 1 for r in args.regions):
        p.error("need --clips >= 1, --frames >= 2, --max_shift >= 0 and --regions >= 1")
    if args.rollouts and not args.checkpoint:
        p.error("--rollouts needs --checkpoint")
    if args.checkpoint and not args.tokenizer_checkpoint:
        p.error("--checkpoint needs --tokenizer_checkpoint (the one it was trained on)")
    dm = VideoDataModule(args.root, args.env_name, args.frames, 8, num_workers=0, eval_clips=args.clips)
    loader = dm.test_dataloader() if args.split == "test" else dm.val_dataloader()
    if len(loader.dataset) == 0:
        print(f"shift_oracle.py: error: the {args.split} split of {dm.dir} has no clip of {args.frames} frames",
              file=sys.stderr)  # fmt: skip
        return 2
    before, after, clips = [], [], []
    for batch in loader:
        clip = to_clip(batch)
        video = clip.video  # (b c T H W) in [-1, 1]
        clips.append(clip)
        before.append(rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w"))
        after.append(rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w"))
    before, after = torch.cat(before), torch.cat(after)
    H, W = before.shape[-2:]
    if any(H % r or W % r for r in args.regions):
        print(f"shift_oracle.py: error: --regions {args.regions} must divide the {H}x{W} frames", file=sys.stderr)
        return 2

    def oracle(regions: int) -> tuple[torch.Tensor, torch.Tensor]:
        found = [best_shift(b, a, args.max_shift, regions) for b, a in
                 tqdm(zip(before.split(64), after.split(64)), desc=f"shifts {regions}x{regions}", unit="batch",
                      disable=None)]  # fmt: skip
        return torch.cat([m for m, _ in found]), torch.cat([s for _, s in found])  # (n c H W), (n r r 2)

    moved, shifts = oracle(1)
    shifts = shifts[:, 0, 0]  # (n 2)
    tiled = {r: oracle(r)[0] for r in args.regions}

    def score(guess: torch.Tensor) -> float:
        return round(float(frame_psnr(guess[:, :, None], after[:, :, None]).mean()), 3)

    report = {"pairs": len(before), "max_shift": args.max_shift,
              "shifted_share": round(float((shifts != 0).any(1).float().mean()), 4),
              "mean_abs_shift": [round(float(v), 3) for v in shifts.abs().float().mean(0)],  # (dx, dy) px
              "pixels": {"copy_psnr": score(before), "best_shift_psnr": score(moved)}}  # fmt: skip
    for r, guess in tiled.items():
        report["pixels"][f"best_shift_{r}x{r}_psnr"] = score(guess)
    line = f"{len(before)} pairs; pixels: " + ", ".join(f"{k[:-5]} {v} dB" for k, v in report["pixels"].items())
    if args.tokenizer_checkpoint:
        from genie.tokenizer import VideoTokenizer

        tok = VideoTokenizer.from_checkpoint(args.tokenizer_checkpoint).eval()

        @torch.no_grad()
        def through(frames: torch.Tensor) -> torch.Tensor:
            out = [tok.decode(tok.tokenize(f[:, :, None]).indices).float().clamp(-1, 1)[:, :, 0] for f in frames.split(64)]
            return torch.cat(out)

        report["tokens"] = {"copy_psnr": score(through(before)), "best_shift_psnr": score(through(moved))}
        for r, guess in tiled.items():
            report["tokens"][f"best_shift_{r}x{r}_psnr"] = score(through(guess))
        report["tokens"]["next_frame_psnr"] = score(through(after))
        line += "; through the tokenizer: " + ", ".join(f"{k[:-5]} {v} dB" for k, v in report["tokens"].items())
    if args.checkpoint:
        try:
            dyn, lam = load_scroll_model(args.checkpoint, tok)
        except (OSError, KeyError, ValueError) as e:
            print(f"shift_oracle.py: error: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        report["predicted"] = predicted_shifts(dyn, lam, tok, clips, score)
        line += "; " + ", ".join(f"{k} {v}" for k, v in report["predicted"].items())
        if args.rollouts:
            report["rollouts"] = rollouts(dyn, lam, tok, clips, args.steps)
            line += "; rollouts t = 1..: " + ", ".join(f"{k} {v}" for k, v in report["rollouts"].items())
    print(line)
    if args.json:
        write_json(Path(args.json), report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
