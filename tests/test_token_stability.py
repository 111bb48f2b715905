"""scripts/token_stability.py: where a tokenizer's codes change between consecutive recorded frames."""

import json

import numpy as np

import pytest
import torch

from genie.checkpoints import store_network
from genie.tokenizer import VideoTokenizer
from helpers.stage2 import load_script

DEC = (("causal", {"in_channels": "code", "out_channels": 8}),
       ("spacetime_upsample", {"in_channels": 8, "out_channels": 3, "space_factor": 4}))  # fmt: skip


def _tokenizer(path, kernel, norm):
    torch.manual_seed(0)
    enc = (
        ("patchify", {"in_channels": 3, "out_channels": 16, "patch_size": 4}),
        ("residual", {"in_channels": 16, "kernel_size": kernel, "norm": norm}),
        ("proj_out", {"in_channels": 16, "out_channels": "code", "kernel_size": kernel, "norm": norm}),
    )
    tokenizer = VideoTokenizer(enc, DEC, quantizer="fsq", fsq_levels=[8, 5, 5, 5])
    ckpt = {"state_dict": {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}}
    store_network(ckpt, "tokenizer", tokenizer.config)
    torch.save(ckpt, path)
    return str(path)


def test_a_patch_local_tokenizer_changes_no_token_where_its_patch_is_still(tmp_path, tiny_root):
    main = load_script("scripts/token_stability.py", "token_stability_script").main
    local = _tokenizer(tmp_path / "local.ckpt", (1, 1, 1), "token")
    wide = _tokenizer(tmp_path / "wide.ckpt", (1, 3, 3), "frame")
    out = tmp_path / "report.json"
    report = main(["--tokenizer_checkpoint", local, wide, "--root", str(tiny_root), "--pairs", "64",
                   "--threshold", "0", "--json", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == report and report["pairs"] == 64
    a, b = report["tokenizers"][local], report["tokenizers"][wide]
    assert a["patches_changed"] == b["patches_changed"] > 0  # the same frames under both
    # identical pixels, the same code; a frame-wide norm reaches them from elsewhere
    assert a["changed_where_still"] == 0 < b["changed_where_still"]
    assert a["tokens_changed"] <= a["patches_changed"]
    assert all(0 <= row["changed_found_nearby"] <= 1 for row in (a, b))
    none = main(["--tokenizer_checkpoint", local, "--root", str(tiny_root), "--pairs", "8", "--threshold", "255"])
    assert none["tokenizers"][local]["patches_changed"] == 0  # no pixel moves by more than 255


def test_a_missing_split_is_one_clear_error(tmp_path):
    main = load_script("scripts/token_stability.py", "token_stability_script").main
    with pytest.raises(SystemExit, match="no packed split"):
        main(["--tokenizer_checkpoint", "x.ckpt", "--root", str(tmp_path)])


def test_a_scroll_by_a_whole_token_is_found_nearby(tmp_path):
    """Frames that scroll by one 4-pixel patch: a patch-local tokenizer's changed tokens are all
    copies of a neighbour in the earlier frame (the edge column, new content, aside)."""
    main = load_script("scripts/token_stability.py", "token_stability_script").main
    g = torch.Generator().manual_seed(0)
    scene = torch.randint(0, 256, (4, 64, 80, 3), generator=g, dtype=torch.uint8)
    frames = torch.stack([scene[:, :, 4:68], scene[:, :, 0:64]], dim=1).reshape(8, 64, 64, 3)  # pairs (t, t+1)
    split = tmp_path / "data" / "coinrun" / "test"
    split.mkdir(parents=True)
    np.save(split / "frames.npy", frames.numpy())
    np.save(split / "firsts.npy", np.array([1, 0] * 4, dtype=bool))
    local = _tokenizer(tmp_path / "local.ckpt", (1, 1, 1), "token")
    row = main(["--tokenizer_checkpoint", local, "--root", str(tmp_path / "data")])["tokenizers"][local]
    assert row["tokens_changed"] > 0.5 and row["changed_found_nearby"] >= 15 / 16 - 0.02, row
