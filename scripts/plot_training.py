"""Training curves of a stage-2 run from its Lightning CSV log (the README's figure).

python scripts/plot_training.py lightning_logs/version_N/metrics.csv --out res/training_curves.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.plots import training_plot  # noqa: E402

PANELS = {  # title -> {line name: logged key}
    "dynamics: masked-token loss": {"train": "train/dyn_loss", "val": "val/dyn_loss"},
    "next-frame PSNR (val, dB)": {"generated, decoded": "val/next_frame_psnr", "LAM reconstruction": "val/lam_psnr"},
    "latent actions (val)": {"perplexity (of 6)": "val/action_perplexity", "NMI x 10": "val/nmi_true_actions"},
}
SCALE = {"val/nmi_true_actions": 10.0}


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(int(r["step"]), float(r[key]) * SCALE.get(key, 1.0)) for r in rows if r.get(key)]
    return [s for s, _ in points], [v for _, v in points]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", help="metrics.csv written by the CSV logger of `genie.py fit`")
    p.add_argument("--out", default="training_curves.png")
    args = p.parse_args()
    with open(args.metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    panels = {title: {name: series(rows, key) for name, key in lines.items()} for title, lines in PANELS.items()}
    print(f"wrote {training_plot(panels, Path(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
