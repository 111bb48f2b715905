"""Write the start images the play page offers: the first frames of a few held-out clips.

    python scripts/start_images.py                 # res/heldout.npz -> res/starts/heldout-<clip>.png

`res/heldout.npz` holds clips from test levels (never trained on). The most varied first frames
are picked (a blank wall makes a dull start), each different from the ones already picked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

RES = Path(__file__).resolve().parents[1] / "res"


def pick(frames: np.ndarray, count: int) -> list[int]:
    """Indices of `count` of `frames (n H W c)`: the most varied first, skipping near-copies."""
    order = np.argsort(-frames.reshape(len(frames), -1).std(1))
    chosen: list[int] = []
    for i in order:
        if all(np.abs(frames[i].astype(int) - frames[j]).mean() > 8 for j in chosen):
            chosen.append(int(i))
        if len(chosen) == count:
            break
    return chosen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", default=str(RES / "heldout.npz"), help="npz with frames (n t H W c) uint8")
    p.add_argument("--out", default=str(RES / "starts"), help="folder of the PNGs")
    p.add_argument("--count", type=int, default=4)
    args = p.parse_args()
    firsts = np.load(args.clips)["frames"][:, 0]  # (n H W c)
    for i in pick(firsts, args.count):
        path = Path(args.out) / f"heldout-{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(firsts[i]).save(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
