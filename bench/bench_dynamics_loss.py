"""The dynamics training step with the head at masked tokens only vs over the whole grid.

    python bench/bench_dynamics_loss.py [--repeats 20] [--preset config/genie.tiny.yaml]

`DynamicsModel.compute_losses` applies the head (V logits per token) and the cross-entropy only
to the masked tokens; the alternative computes the logits of every token and weights the
unmasked ones by zero. Both give the same loss (tests/test_dynamics.py). This times forward +
backward of each, alternating in one run so the machine's drift hits both alike, on the preset's
clip shape (batch, frames, 16x16 tokens of a 1000-code tokenizer) and its dynamics model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie import maskgit  # noqa: E402
from genie.dynamics import DynamicsModel  # noqa: E402


def full_grid_loss(model: DynamicsModel, tokens: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
    """The loss with logits for every token, the unmasked ones weighted by zero."""
    flat = tokens.flatten(2)
    inputs = torch.where(mask, model.mask_id, flat).view(tokens.shape)
    logits = model.logits(inputs, actions, reference=tokens).float()  # (b t s V)
    ce = F.cross_entropy(logits.permute(0, 3, 1, 2), flat, reduction="none")  # (b t s)
    return (ce * mask).sum() / mask.sum().clamp(min=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default=str(REPO / "config/genie.tiny.yaml"))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--vocab", type=int, default=1000, help="the tokenizer's codebook size")
    p.add_argument("--side", type=int, default=16, help="token grid side")
    args = p.parse_args()
    cfg = yaml.safe_load(Path(args.preset).read_text())
    dyn = cfg["model"]["dynamics"]["init_args"]
    b, t = cfg["data"]["batch_size"], cfg["data"]["num_frames"]
    k = cfg["model"]["lam"]["init_args"]["num_actions"]
    torch.manual_seed(0)
    model = DynamicsModel(args.vocab, k, max_frames=t, **{**dyn, "mask_rate": (0.0, 1.0), "mask_per_frame": True})
    tokens = torch.randint(0, args.vocab, (b, t, args.side, args.side))
    actions = torch.randint(0, k, (b, t))
    times: dict[str, list[float]] = {"masked tokens only": [], "whole grid": []}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {b} x {t} frames of "
          f"{args.side}x{args.side} tokens, V={args.vocab}; {args.repeats} repeats, alternating")  # fmt: skip
    for i in range(args.repeats + 2):  # the first two: warm-up
        torch.manual_seed(i)
        mask = maskgit.training_mask(b, t, args.side**2, (0.0, 1.0), per_frame=True)
        for name in times:
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            if name == "whole grid":
                loss = full_grid_loss(model, tokens, actions, mask)
            else:
                torch.manual_seed(i)  # compute_losses draws the same mask
                loss = model.compute_losses(tokens, actions).loss
            loss.backward()
            if i >= 2:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["whole grid"])
    print(f"{'variant':<22}{'ms/step (median)':>18}{'vs whole grid':>16}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<22}{m * 1e3:>18.1f}{base / m:>15.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
