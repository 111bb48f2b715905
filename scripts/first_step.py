"""What a recorded-action world model believes about the first step from a level start, against
what the game does: whether a frozen rollout comes from the model not knowing the motion, or
from MaskGIT's decoding.

    python scripts/first_step.py --checkpoint runs/<run>/checkpoints/last.ckpt --root ./data/unseen.skip8 \
        --levels 8 --json out.json

For each button (the 15 CoinRun combos, or `--actions`) and each of the first `--levels` level
starts of the split, the game is stepped once with the button held (`genie.record.hold_action`,
as the data was recorded) and both frames are tokenized. The model then sees the start frame and
the button, with every token of the next frame masked (MaskGIT's first round), and reports:

- `changed`: the share of tokens the game's step changes (the rest equal the start frame's);
- at the changed tokens, how often the model's most likely token is the game's (`argmax_true`)
  or the start frame's (`argmax_copy`), and the mean log-probability of each (`logp_true`,
  `logp_copy`; log(1/V) is a uniform guess);
- the frame greedy MaskGIT decoding makes with `--steps` rounds and with one round: the share of
  its tokens equal to the start frame's (`copy`) and to the game's (`true`).

Needs a checkpoint trained on the recorded actions (`model.action_source: recorded`): a latent
action has no button to hold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.data import to_video  # noqa: E402
from genie.maskgit import STEPS  # noqa: E402
from genie.record import env_facts, hold_action, write_json  # noqa: E402
from genie.world import load_world  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="genie.py fit checkpoint trained on the recorded actions")
    p.add_argument("--tokenizer_checkpoint", default=str(REPO / "res" / "tokenizer.ckpt"))
    p.add_argument("--root", required=True, help="data root of sample.py / split.py (its level seeds and frame skip)")
    p.add_argument("--env_name", default="Coinrun")
    p.add_argument("--split", default="test")
    p.add_argument("--levels", type=int, default=8)
    p.add_argument("--actions", nargs="*", default=None, help="button combos (default: all)")
    p.add_argument("--steps", type=int, default=STEPS, help="MaskGIT rounds of the multi-round decoding")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    if args.levels < 1 or args.steps < 1:
        p.error("--levels and --steps must be >= 1")
    return args


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    data = Path(args.root) / args.env_name.lower()
    meta = json.loads((data / "metadata.json").read_text())
    seeds = sorted(json.loads((data / "splits.json").read_text())["level_seeds"][args.split])[: args.levels]
    world = load_world(args.checkpoint, args.tokenizer_checkpoint)
    if world.action_source != "recorded":
        sys.exit(f"error: {args.checkpoint} was trained on latent actions; this probe holds the game's buttons")
    dyn, tokenizer = world.dynamics.eval(), world.tokenizer.eval()
    names, _ = env_facts(meta["env_name"], meta.get("distribution_mode", "hard"))
    unknown = sorted(set(args.actions or []) - set(names))
    if unknown:
        sys.exit(f"error: unknown buttons {unknown}; CoinRun's are {names}")
    report = {"checkpoint": args.checkpoint, "levels": len(seeds), "frame_skip": meta.get("frame_skip", 1),
              "uniform_logp": round(-math.log(dyn.tok_vocab), 2), "actions": {}}  # fmt: skip
    for name in args.actions or names:
        a = names.index(name)
        frames = [hold_action(meta["env_name"], s, a, 1, meta.get("distribution_mode", "hard"),
                              meta.get("frame_skip", 1))[0] for s in seeds]  # fmt: skip
        tokens = tokenizer.tokenize(to_video(torch.from_numpy(np.stack(frames)))).indices  # (L 2 h w)
        acts = torch.full((len(seeds), 1), a)
        masked = tokens.clone()
        masked[:, 1] = dyn.mask_id
        logp = dyn.logits(masked, acts)[:, 1].float().log_softmax(-1)  # (L s V)
        start, true = tokens[:, 0].flatten(1), tokens[:, 1].flatten(1)  # (L s)
        changed = true != start
        best = logp.argmax(-1)
        row = {
            "changed": round(changed.float().mean().item(), 3),
            "argmax_true": round((best == true)[changed].float().mean().item(), 3),
            "argmax_copy": round((best == start)[changed].float().mean().item(), 3),
            "logp_true": round(logp.gather(-1, true[..., None])[..., 0][changed].mean().item(), 2),
            "logp_copy": round(logp.gather(-1, start[..., None])[..., 0][changed].mean().item(), 2),
        }
        for steps in sorted({args.steps, 1}, reverse=True):
            new = dyn.generate(tokens[:, :1], acts, steps=steps, temperature=0.0)[:, 1].flatten(1)
            row[f"decoded_{steps}_rounds"] = {"copy": round((new == start).float().mean().item(), 3),
                                              "true": round((new == true).float().mean().item(), 3)}  # fmt: skip
        report["actions"][name] = row
        print(f"{name:12s} {json.dumps(row)}", flush=True)
    if args.json:
        write_json(Path(args.json), report)
    return report


if __name__ == "__main__":
    main()
