"""Split recorded episodes into train/val/test by level seed and pack them for training.

    python split.py --env_name Coinrun --root ./data

Levels (not frames) are dealt into splits, so validation and test levels are never seen
in training. Corrupt or truncated episode files are reported by name and left out.
Re-running gives the same result. See `genie/splitting.py` for the packed layout.
"""

import argparse
import sys

from genie.splitting import SPLITS, split


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env_name", default="Coinrun", help="procgen game (case-insensitive)")
    p.add_argument("--root", default="./data", help="data root given to sample.py")
    p.add_argument("--train", type=float, default=0.9, help="fraction of levels for training")
    p.add_argument("--val", type=float, default=0.05, help="fraction of levels for validation")
    p.add_argument("--test", type=float, default=0.05, help="fraction of levels for testing")
    p.add_argument("--seed", type=int, default=0, help="seeds the level assignment")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    try:
        report = split(args.root, args.env_name, (args.train, args.val, args.test), args.seed, progress=not args.quiet)
    except (ValueError, OSError) as e:
        print(f"split.py: error: {e}", file=sys.stderr)
        return 2
    for name in SPLITS:
        s = report["splits"][name]
        print(f"{name:>5}: {s['levels']:6d} levels {s['frames']:10d} frames")
    if report["left_out"]:
        print(f"left out {len(report['left_out'])} corrupt episode(s): {', '.join(report['left_out'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
