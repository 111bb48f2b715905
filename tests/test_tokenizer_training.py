"""tokenizer.py: the LightningCLI entry point, both presets, checkpoints and resuming."""

from pathlib import Path

import pytest
import torch

import tokenizer as tokenizer_cli
from genie.data import to_clip
from genie.tokenizer import VideoTokenizer

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--data.num_frames", "4", "--data.batch_size", "2", "--data.num_workers", "0", "--data.eval_clips", "2"]


def _fit(tmp_path, tiny_root, config: str, *extra: str):
    args = ["fit", "-c", str(REPO / "config" / config), "--data.root", str(tiny_root), *SMALL,
            "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    return tokenizer_cli.main(args)


@pytest.mark.parametrize(
    "config", ["tokenize.tiny.yaml", "tokenize.tiny.lfq.yaml", "tokenize.tiny.magvit.yaml", "tokenize.yaml"]
)
def test_fast_dev_run_of_each_preset(tmp_path, tiny_root, monkeypatch, config):
    monkeypatch.chdir(tmp_path)
    extra = ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true"]  # CI has no GPU
    cli = _fit(tmp_path, tiny_root, config, "--trainer.fast_dev_run", "1", *extra)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    codes = 8 * 5 * 5 * 5 if config == "tokenize.tiny.yaml" else 2**10  # FSQ [8, 5, 5, 5] or 10 LFQ bits (App. F)
    assert cli.model.tokenizer.downsampling == (1, 4) and cli.model.tokenizer.codebook_size == codes


def test_checkpoint_rebuilds_the_tokenizer_and_training_resumes(tmp_path, tiny_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _fit(
        tmp_path, tiny_root, "tokenize.tiny.yaml", "--trainer.max_steps", "3", "--trainer.val_check_interval", "3"
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file() and first.trainer.global_step == 3
    rebuilt = VideoTokenizer.from_checkpoint(str(last)).eval()
    trained = first.model.tokenizer.eval()
    batch = to_clip(next(iter(first.datamodule.val_dataloader())))
    with torch.no_grad():
        assert torch.equal(rebuilt.tokenize(batch.video).indices, trained.tokenize(batch.video).indices)
    resumed = _fit(tmp_path, tiny_root, "tokenize.tiny.yaml", "--trainer.max_steps", "5", "--ckpt_path", "last")
    assert resumed.trainer.global_step == 5  # continued from step 3, not from 0
    for sub in ("validate", "test"):
        args = [sub, "-c", str(REPO / "config" / "tokenize.tiny.yaml"), "--data.root", str(tiny_root), *SMALL,
                "--trainer.enable_progress_bar", "false", "--ckpt_path", str(last)]  # fmt: skip
        metrics = tokenizer_cli.main(args).trainer.callback_metrics
        stage = "val" if sub == "validate" else "test"
        assert {f"{stage}/psnr", f"{stage}/ssim", f"{stage}/code_usage", f"{stage}/rec"} <= set(metrics)
    args = [
        "predict",
        "-c",
        str(REPO / "config" / "tokenize.tiny.yaml"),
        "--data.root",
        str(tiny_root),
        *SMALL,
        "--trainer.enable_progress_bar",
        "false",
        "--ckpt_path",
        str(last),
        "--trainer.limit_predict_batches",
        "1",
    ]
    predictions = tokenizer_cli.main(args + ["--trainer.logger", "false"]).trainer.predict_loop.predictions
    assert predictions[0].shape == (2, 4, 16, 16) and predictions[0].dtype == torch.int64
    with pytest.raises(ValueError, match="no 'tokenizer' network"):
        torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
        VideoTokenizer.from_checkpoint(str(tmp_path / "other.ckpt"))
    with pytest.raises(FileNotFoundError):
        VideoTokenizer.from_checkpoint(str(tmp_path / "missing.ckpt"))


def test_gan_training_uses_two_optimizers_and_counts_training_steps(tmp_path, tiny_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    disc = '{"inp_size": [64, 64], "model_dim": 16, "dim_mults": [1, 2], "down_step": [2, 2], "num_groups": 8}'
    cli = _fit(tmp_path, tiny_root, "tokenize.tiny.yaml", "--trainer.fast_dev_run", "3",
               "--model.tokenizer.init_args.disc_kwargs", disc, "--model.gan_start_step", "1")  # fmt: skip
    assert cli.trainer.global_step == 3  # discriminator steps are not extra training steps
    assert len(cli.trainer.optimizers) == 2
    logged = cli.trainer.logged_metrics
    assert "train/gan_d" in logged and "train/gan_g" in logged
