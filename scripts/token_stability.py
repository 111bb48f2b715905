"""How often a tokenizer's codes change between consecutive recorded frames, against how often the
pixels of their patches change: whether a token changes only where its own patch does.

    python scripts/token_stability.py --tokenizer_checkpoint res/tokenizer.ckpt \
        runs/tokenizer.tiny.local/checkpoints/last.ckpt --root ./data/unseen.skip8 --json out.json

For up to `--pairs` consecutive frame pairs of one life in the split, each tokenizer's token grid
is compared position by position with the pixel patch under it (`patch` = the tokenizer's spatial
down-sampling; a patch "changed" when any of its pixel values moved by more than `--threshold`):

- `tokens_changed`: the share of token positions whose code differs;
- `patches_changed`: the share of patches whose pixels changed;
- `changed_where_still`: among patches that did not change, the share whose token did (0 for a
  tokenizer whose token is a function of its own patch);
- `changed_where_moved`: among patches that changed, the share whose token did;
- `changed_found_nearby`: among changed tokens, the share equal to a token of the earlier frame
  within one place (the 3x3 neighbourhood): the most a "copy from a neighbour" rule, which is how
  a scroll of a whole token would look, could get right.

A dynamics model predicting the next frame's tokens has to explain every changed token; the ones
that change where nothing changed are noise it cannot predict from the frame's content.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.data import to_video  # noqa: E402
from genie.record import write_json  # noqa: E402
from genie.tokenizer import VideoTokenizer  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer_checkpoint", nargs="+", required=True, help="one or more tokenizer checkpoints")
    p.add_argument("--root", required=True, help="data root of sample.py / split.py")
    p.add_argument("--env_name", default="Coinrun")
    p.add_argument("--split", default="test")
    p.add_argument("--pairs", type=int, default=2048)
    p.add_argument("--threshold", type=float, default=8.0, help="pixel change (0-255) that counts as a change")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.batch_size < 1:
        p.error("--pairs and --batch_size must be >= 1")
    return args


def frame_pairs(split_dir: Path, pairs: int) -> np.ndarray:
    """(n 2 h w c) uint8: consecutive frames of one life, the first `pairs` such pairs of the split."""
    if not (split_dir / "frames.npy").exists():
        sys.exit(f"error: no packed split at {split_dir}; run split.py first")
    frames = np.load(split_dir / "frames.npy", mmap_mode="r")
    firsts = np.load(split_dir / "firsts.npy")
    starts = np.flatnonzero(~firsts[1:].astype(bool))[:pairs]  # frame i and i+1 in one life
    if len(starts) == 0:
        sys.exit(f"error: {split_dir} has no two consecutive frames of one life")
    return np.stack([frames[starts], frames[starts + 1]], axis=1)


@torch.no_grad()
def stability(tokenizer: VideoTokenizer, pairs: np.ndarray, threshold: float, batch_size: int) -> dict:
    _, s = tokenizer.downsampling
    # tokens changed, patches changed, still patches, changed where still, changed where moved, found nearby
    totals = np.zeros(6)
    for i in tqdm(range(0, len(pairs), batch_size), desc="pairs", unit="batch", leave=False):
        frames = torch.from_numpy(pairs[i : i + batch_size])  # (b 2 h w c)
        tokens = tokenizer.tokenize(to_video(frames)).indices  # (b 2 h' w')
        token_changed = tokens[:, 1] != tokens[:, 0]
        diff = (frames[:, 1].int() - frames[:, 0].int()).abs()  # (b h w c)
        patch = rearrange(diff, "b (h ph) (w pw) c -> b h w (ph pw c)", ph=int(s), pw=int(s)).amax(-1) > threshold
        still = ~patch
        nearby = torch.zeros_like(token_changed)
        padded = F.pad(tokens[:, 0], (1, 1, 1, 1), value=-1)  # (b h'+2 w'+2), -1 matches no token
        h, w = tokens.shape[-2:]
        for dy in range(3):
            for dx in range(3):
                nearby |= padded[:, dy : dy + h, dx : dx + w] == tokens[:, 1]
        totals += [token_changed.sum(), patch.sum(), still.sum(), (token_changed & still).sum(),
                   (token_changed & patch).sum(), (token_changed & nearby).sum()]  # fmt: skip
    n = pairs.shape[0] * token_changed[0].numel()
    return {
        "tokens_changed": round(totals[0] / n, 3),
        "patches_changed": round(totals[1] / n, 3),
        "changed_where_still": round(totals[3] / max(totals[2], 1), 3),
        "changed_where_moved": round(totals[4] / max(totals[1], 1), 3),
        "changed_found_nearby": round(totals[5] / max(totals[0], 1), 3),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    pairs = frame_pairs(Path(args.root) / args.env_name.lower() / args.split, args.pairs)
    report = {"root": args.root, "split": args.split, "pairs": len(pairs), "threshold": args.threshold,
              "tokenizers": {}}  # fmt: skip
    for path in args.tokenizer_checkpoint:
        tokenizer = VideoTokenizer.from_checkpoint(path).eval()
        row = stability(tokenizer, pairs, args.threshold, args.batch_size)
        report["tokenizers"][path] = row
        print(f"{path}: {json.dumps(row)}", flush=True)
    if args.json:
        write_json(Path(args.json), report)
    return report


if __name__ == "__main__":
    main()
