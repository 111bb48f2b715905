"""One table from several `evaluate.py` reports: each run's numbers next to the targets a world
model is held to (dynamics vs copying the frame, controllability, latent actions vs the game).

    python scripts/compare_reports.py eval/run_a eval/run_b ... [--markdown out.md]

Columns (all on the held-out clips of each report; `+` = margin over the baseline):
  tf / copy        teacher-forced next frame PSNR, and copying the last real frame through the
                   tokenizer (the baseline that shares the tokenizer's error); target: tf >= copy + 1
  t5 / copy0       rollout PSNR at t = 5 and copying frame 0 through the tokenizer; target +1
  dPSNR            Genie's Delta_t PSNR at t = 4; target >= 1 dB
  NMI / NMI grp    latent vs the 15 recorded actions / vs their effective groups
  probe            linear probe latent action -> effective group: fraction of the way from chance
                   to the inverse-dynamics classifier (balanced accuracy); target >= 0.6
  x / y spread     control probe: the model's left-right and up-down spreads over the game's; target >= 0.5
  chg / chg ok / chg copied
                   teacher-forced tokens: the real share that changes from the frame before, and of
                   those the shares the model gets right and copies (reports that predate these: -)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def row(report: dict) -> dict:
    d = report["dynamics"]
    rollout, copy0 = d["rollout_psnr_by_horizon"], d["copy_first_frame_tokens_psnr_by_horizon"]
    probe = report.get("probe", {}).get("latent_action", {})
    control = report.get("control", {})
    tokens = d.get("teacher_forced_tokens", {})
    return {
        "actions": report.get("action_source", "latent"),
        "tf": d["teacher_forced_psnr"],
        "copy": d["copy_last_frame_tokens_psnr"],
        "tf+": round(d["teacher_forced_psnr"] - d["copy_last_frame_tokens_psnr"], 2),
        "t5": rollout[-1],
        "copy0": copy0[-1],
        "t5+": round(rollout[-1] - copy0[-1], 2),
        "dPSNR": report["delta_psnr_t4"]["genie"],
        "NMI": report["lam"]["nmi_true_actions"],
        "NMI grp": report["lam"].get("nmi_effective_groups"),
        "probe": probe.get("balanced_fraction"),
        "x spread": control.get("spread_x_ratio"),
        "y spread": control.get("spread_y_ratio"),
        "chg": tokens.get("changed_share"),
        "chg ok": tokens.get("changed_accuracy"),
        "chg copied": tokens.get("changed_copied"),
    }


def table(rows: dict[str, dict]) -> str:
    cols = ["run", *next(iter(rows.values()))]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in rows.items():
        lines.append("| " + " | ".join([name, *("-" if v is None else str(v) for v in r.values())]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compare_reports.py", description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="evaluate.py output folders (or their report.json)")
    p.add_argument("--markdown", help="also write the table to this file")
    args = p.parse_args(argv)
    rows = {}
    for path in map(Path, args.reports):
        file = path / "report.json" if path.is_dir() else path
        try:
            rows[path.name if path.is_dir() else path.parent.name] = row(json.loads(file.read_text()))
        except (OSError, json.JSONDecodeError, KeyError) as e:
            reason = f"not an evaluate.py report ({type(e).__name__}: {e})"
            print(f"compare_reports.py: error: {file}: {reason}", file=sys.stderr)
            return 2
    text = table(rows)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
