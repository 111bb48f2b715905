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

from genie.data import VideoDataModule, to_clip  # noqa: E402
from genie.evaluation import frame_psnr  # noqa: E402
from genie.motion import move  # noqa: E402
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
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    if args.clips < 1 or args.frames < 2 or args.max_shift < 0 or any(r < 1 for r in args.regions):
        p.error("need --clips >= 1, --frames >= 2, --max_shift >= 0 and --regions >= 1")
    dm = VideoDataModule(args.root, args.env_name, args.frames, 8, num_workers=0, eval_clips=args.clips)
    loader = dm.test_dataloader() if args.split == "test" else dm.val_dataloader()
    if len(loader.dataset) == 0:
        print(f"shift_oracle.py: error: the {args.split} split of {dm.dir} has no clip of {args.frames} frames",
              file=sys.stderr)  # fmt: skip
        return 2
    before, after = [], []
    for batch in loader:
        video = to_clip(batch).video  # (b c T H W) in [-1, 1]
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
    print(line)
    if args.json:
        write_json(Path(args.json), report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
