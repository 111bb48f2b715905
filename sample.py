"""Record Procgen episodes with a uniformly random agent (Genie Appendix F).

    python sample.py --env_name Coinrun --num_envs 10000 --timeout 1000 --root ./data

`--num_envs` is the number of levels (one episode per level seed), `--timeout` the number
of steps recorded per level. Interrupt at any time and run the same command again to
resume. The on-disk format is described in `data/README.md` and `genie/episodes.py`.
"""

import argparse
import os
import shlex
import sys

from genie.record import sample


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env_name", default="Coinrun", help="procgen game (case-insensitive)")
    p.add_argument("--num_envs", type=int, default=10_000, help="number of levels = episodes to record")
    p.add_argument("--timeout", type=int, default=1000, help="steps recorded per level")
    p.add_argument("--root", default="./data", help="data root; episodes go to <root>/<env>/episodes")
    p.add_argument("--start_level", type=int, default=0, help="first level seed")
    p.add_argument("--distribution_mode", default="hard", help="procgen difficulty (App. F: hard)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="recording processes")
    p.add_argument("--seed", type=int, default=0, help="seeds the random policy")
    p.add_argument("--action_repeat", type=int, default=1,
                   help="steps each random action is held (1: a fresh action every step, App. F)")
    p.add_argument("--frame_skip", type=int, default=1,
                   help="game frames per recorded step, the action repeated (1: every frame, App. F)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    command = shlex.join(["python", "sample.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        report = sample(
            args.root, args.env_name, args.num_envs, args.timeout, args.start_level,
            args.distribution_mode, args.workers, args.seed, command, progress=not args.quiet,
            action_repeat=args.action_repeat, frame_skip=args.frame_skip,
        )  # fmt: skip
    except (ValueError, OSError) as e:
        print(f"sample.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sample.py: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(
        f"recorded {report.recorded} episodes ({report.frames} frames) in {report.seconds:.1f}s "
        f"= {report.frames_per_second:,.0f} frames/s; {report.skipped} already on disk"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
