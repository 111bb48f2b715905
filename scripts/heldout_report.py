"""The numbers behind tests/test_bundled.py: the bundled model and an untrained one of the same
shape on res/heldout.npz (teacher-forced and rollout PSNR next to the copy baselines), and the
spreads of the held latent actions.

    python scripts/heldout_report.py
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import test_bundled  # noqa: E402

tok = test_bundled.tokenizer_report()
print("tokenizer", {k: tok[k] for k in ("psnr", "avg_pool_2x2_psnr", "codebook_usage", "frames")})
print("model teacher_forced copy_last_frame_tokens rollout_psnr_by_horizon copy_first_frame_tokens_psnr_by_horizon")
for name in ("trained", "untrained"):
    d = test_bundled._report(untrained=name == "untrained")["dynamics"]
    print(name, d["teacher_forced_psnr"], d["copy_last_frame_tokens_psnr"], d["rollout_psnr_by_horizon"],
          d["copy_first_frame_tokens_psnr_by_horizon"])  # fmt: skip
control = test_bundled.control_report()[0]
print("control (4 first frames, 3 steps held) spread_x spread_y", control["spread_x"], control["spread_y"])
