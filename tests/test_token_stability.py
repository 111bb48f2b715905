"""scripts/token_stability.py: where a tokenizer's codes change between consecutive recorded frames."""

import json

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
    none = main(["--tokenizer_checkpoint", local, "--root", str(tiny_root), "--pairs", "8", "--threshold", "255"])
    assert none["tokenizers"][local]["patches_changed"] == 0  # no pixel moves by more than 255


def test_a_missing_split_is_one_clear_error(tmp_path):
    main = load_script("scripts/token_stability.py", "token_stability_script").main
    with pytest.raises(SystemExit, match="no packed split"):
        main(["--tokenizer_checkpoint", "x.ckpt", "--root", str(tmp_path)])
