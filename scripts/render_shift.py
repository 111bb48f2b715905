"""Does a `scroll` dynamics model render the shift it is given? Force each shift, measure the frame.

    python scripts/render_shift.py --checkpoint runs/<run>/checkpoints/last.ckpt \
        --tokenizer_checkpoint res/tokenizer.ckpt --shift=0,0 --shift=-6,0 --shift=6,0 --shift=0,8

From the first frame of each of `res/heldout.npz`'s clips (test levels), one greedy step of the
world model with its shift head replaced by the given shift: the previous frame moved by exactly
that shift is what the new frame reads (`DynamicsModel(scroll=R)`). The measured shift from the
start frame to the generated one (`genie.motion.closest_shift`) says whether the model renders it
or falls back to the unmoved frame. Prints, per forced shift, the share of clips whose new frame
moved by exactly that shift and the mean measured shift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.data import to_video  # noqa: E402
from genie.motion import closest_shift  # noqa: E402
from genie.record import write_json  # noqa: E402
from genie.world import World, load_world  # noqa: E402


def rendered_shifts(world: World, images: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """One greedy step from each of `images (n c H W)` with the shift forced to `shift` (dx, dy):
    the measured shift from each image's reconstruction to its new frame, `(n 2)`."""
    dyn = world.dynamics
    forced = torch.tensor([shift])

    def moved(tokens, seen, act, temperature, generator):  # the model's own `_scrolled_frame`, its head bypassed
        return dyn.scroller.move(seen.frames[:, -1], forced.expand(len(tokens), 2), tokens[:, -1])[:, None]

    dyn._scrolled_frame = moved
    try:
        start = world.reset(images)
        new = world.step(0)
    finally:
        del dyn._scrolled_frame  # back to the class's method
    return closest_shift(start, new, dyn.scroll)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="render_shift.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="genie.py fit checkpoint of a scroll dynamics model")
    p.add_argument("--tokenizer_checkpoint", default=str(REPO / "res" / "tokenizer.ckpt"))
    p.add_argument("--clips", default=str(REPO / "res" / "heldout.npz"), help="npz with frames (n t H W c) uint8")
    p.add_argument("--shift", action="append", default=[],
                   help="dx,dy in pixels (repeatable; --shift=-6,0 for a negative dx)")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    try:
        shifts = [tuple(int(v) for v in s.split(",")) for s in args.shift or ["0,0", "-6,0", "6,0", "0,8"]]
        if any(len(s) != 2 for s in shifts):
            raise ValueError(f"--shift takes dx,dy, got {args.shift}")
        world = load_world(args.checkpoint, args.tokenizer_checkpoint, temperature=0.0)
        if not world.dynamics.scroll:
            raise ValueError(f"{args.checkpoint}: its dynamics model has no scroll head (dynamics.scroll: 0)")
        frames = np.load(args.clips)["frames"]
        images = to_video(torch.from_numpy(frames[:, :1]))[:, :, 0]  # (n c H W)
    except (OSError, KeyError, ValueError) as e:
        print(f"render_shift.py: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    result = {"checkpoint": args.checkpoint, "clips": len(images), "shifts": {}}
    for shift in shifts:
        found = rendered_shifts(world, images, shift)
        result["shifts"][f"{shift[0]},{shift[1]}"] = {
            "rendered_exactly": round(float((found == torch.tensor(shift)).all(1).float().mean()), 3),
            "mean_measured": [round(float(v), 2) for v in found.float().mean(0)],
        }
    print(json.dumps(result, indent=1))
    if args.json:
        write_json(Path(args.json), result)  # atomically
    return 0


if __name__ == "__main__":
    sys.exit(main())
