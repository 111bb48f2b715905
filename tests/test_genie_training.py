"""genie.py: the LightningCLI entry point of stage 2, both presets, checkpoints, resuming, bad input."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import evaluate as evaluate_cli
from genie.action import LatentAction
from genie.checkpoints import CheckpointError, MissingCheckpointError
from genie.dynamics import DynamicsModel
from genie.motion import closest_shift
from genie.world import load_world
from helpers.stage2 import REPO, genie_args, genie_cli, load_script, tokenizer_checkpoint


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {
        "genie.tiny.yaml": tokenizer_checkpoint(root / "tiny.ckpt", "tokenize.tiny.yaml"),
        "genie.yaml": tokenizer_checkpoint(root / "appf.ckpt", "tokenize.yaml"),
    }


@pytest.mark.parametrize("config", ["genie.tiny.yaml", "genie.yaml"])
def test_fast_dev_run_of_each_preset(tmp_path, tiny_root, tokenizers, monkeypatch, config):
    monkeypatch.chdir(tmp_path)
    extra = ["--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu", "--trainer.precision", "32-true"]
    cli = genie_cli.main(genie_args("fit", config, tiny_root, tokenizers[config], tmp_path, *extra))
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    model = cli.model
    codes = {"genie.tiny.yaml": 8 * 5 * 5 * 5, "genie.yaml": 2**10}[config]  # FSQ levels / LFQ bits of its tokenizer
    assert model.dynamics.tok_vocab == model.tokenizer.codebook_size == codes  # linked from the tokenizer
    assert model.dynamics.act_vocab == model.lam.num_actions == 6  # linked from the LAM (App. F)
    assert not any(p.requires_grad for p in model.tokenizer.parameters())
    logged = cli.trainer.logged_metrics
    assert {"train/dyn_loss", "train/dyn_acc", "train/lam_rec", "train/action_perplexity"} <= set(logged)
    assert {"val/nmi_true_actions", "val/action_share_0", "val/next_frame_psnr"} <= set(logged)


def test_a_lam_motion_head_and_a_scroll_model_share_the_shifts_they_are_taught(tmp_path, tiny_root, tokenizers,
                                                                               monkeypatch):  # fmt: skip
    """With `lam.motion_shift` equal to `dynamics.scroll` a step measures each clip's shifts once, for
    both: the LAM never measures its own, and both shift losses are logged. The bundle of such a
    model carries the greedy shift rule it is given."""
    import genie.action

    monkeypatch.chdir(tmp_path)
    own = []
    monkeypatch.setattr(genie.action, "closest_shift", lambda *a: own.append(1) or closest_shift(*a))
    tok = tokenizers["genie.tiny.yaml"]
    extra = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--model.lam.init_args.motion_shift", "4",
             "--model.dynamics.init_args.scroll", "4"]  # fmt: skip
    cli = genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, tok, tmp_path, *extra))
    assert cli.trainer.state.finished and not own
    assert {"train/lam_motion", "train/lam_motion_acc", "train/dyn_shift_loss"} <= set(cli.trainer.logged_metrics)
    bundle = load_script("scripts/bundle.py", "bundle_script")
    out = tmp_path / "res"
    args = ["--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--tokenizer_checkpoint", str(tok), "--root",
            str(tiny_root), "--out", str(out), "--heldout_clips", "2", "--heldout_frames", "4"]  # fmt: skip
    assert bundle.main([*args, "--shift_pick", "mode"]) == 0
    world = load_world(str(out / "genie.ckpt"), str(out / "tokenizer.ckpt"))
    assert world.dynamics.scroll == 4 and world.dynamics.shift_pick == "mode"
    kept = (out / "tokenizer.ckpt").read_bytes()
    args[3] = str(out / "tokenizer.ckpt")  # re-bundling on the bundled tokenizer keeps that file as it is
    assert bundle.main(args) == 0  # without --shift_pick: the rule it was trained with
    assert (out / "tokenizer.ckpt").read_bytes() == kept
    assert load_world(str(out / "genie.ckpt"), str(out / "tokenizer.ckpt")).dynamics.shift_pick == "mean"


def _keys(tree) -> set[str]:
    if isinstance(tree, dict):
        return set(tree) | set().union(*(_keys(v) for v in tree.values()))
    return set().union(*(_keys(v) for v in tree)) if isinstance(tree, list) else set()


ABLATIONS = sorted(f"ablations/{p.name}" for p in (REPO / "config" / "ablations").glob("*.yaml")
                   if not p.name.startswith("tokenize"))  # stage-1 ablations: tests/test_tokenizer_training.py


@pytest.mark.parametrize("preset", ["genie.tiny.yaml", "genie.yaml", *ABLATIONS])
def test_each_preset_states_the_clip_length_once(preset, tokenizers, tmp_path):
    configs = [REPO / "config" / c for c in ({"genie.yaml": ["genie.yaml"]}.get(preset) or ["genie.tiny.yaml", preset])]
    assert "max_frames" not in set().union(*(_keys(yaml.safe_load(c.read_text())) for c in configs))
    clip = 5  # not any preset's own length: the networks must follow data.num_frames
    tok = tokenizers["genie.yaml" if preset == "genie.yaml" else "genie.tiny.yaml"]
    args = [a for c in configs for a in ("-c", str(c))] + ["--data.num_frames", str(clip),
            "--model.tokenizer_ckpt_path", str(tok), "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    cli = genie_cli.GenieCLI(genie_cli.GenieTraining, genie_cli.VideoDataModule, args=args, run=False)
    assert cli.model.lam.max_frames == cli.model.dynamics.max_frames == cli.datamodule.num_frames == clip
    with pytest.raises(SystemExit):  # the dynamics model's clip length is not a setting of its own
        genie_cli.GenieCLI(genie_cli.GenieTraining, genie_cli.VideoDataModule, run=False,
                           args=[*args, "--model.dynamics.init_args.max_frames", "7"])  # fmt: skip


def test_compiled_training_keeps_checkpoint_names_and_fuses_adamw(tmp_path, tiny_root, tokenizers, monkeypatch):
    """`--model.compile true` wires torch.compile into training. The compiler is TorchDynamo
    with its eager backend here (it traces the loss functions; generating kernels for both
    networks' backward passes would take minutes of CI on 2 cores)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    extra = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--model.compile", "true"]
    tok = tokenizers["genie.tiny.yaml"]
    cli = genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, tok, tmp_path, *extra))
    model = cli.model
    assert cli.trainer.global_step == 2 and torch.isfinite(cli.trainer.logged_metrics["train/loss"])
    assert getattr(model.dynamics.compute_losses, "_genie_compiled", False)  # the compiled version ran
    assert not any("_orig_mod" in k for k in model.state_dict())  # checkpoints load without compile
    assert cli.trainer.optimizers[0].defaults["fused"]


def test_checkpoint_round_trip_resume_and_evaluation(tmp_path, tiny_root, tokenizers, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tok = tokenizers["genie.tiny.yaml"]
    first = genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, tok, tmp_path,
                                      "--trainer.max_steps", "3", "--trainer.val_check_interval", "3"))  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file() and first.trainer.global_step == 3
    ckpt = torch.load(last, weights_only=False)
    assert not any(k.startswith("tokenizer.") for k in ckpt["state_dict"])  # frozen: stored on its own
    assert ckpt["tokenizer"]["codebook_size"] == 1000  # FSQ [8, 5, 5, 5] of tokenize.tiny.yaml
    recorded = json.loads((tiny_root / "coinrun" / "metadata.json").read_text())
    assert ckpt["data"] == {k: recorded[k] for k in ("env_name", "distribution_mode", "policy", "action_repeat",
                                                     "frame_skip")}  # what one step is, for play.py  # fmt: skip
    assert load_world(str(last), str(tok)).game_frames_per_step == recorded["frame_skip"]
    lam, dyn = LatentAction.from_checkpoint(str(last)).eval(), DynamicsModel.from_checkpoint(str(last)).eval()
    model = first.model.eval()
    video = torch.rand(2, 3, 4, 64, 64) * 2 - 1
    tokens = torch.randint(0, 1000, (2, 4, 16, 16))
    with torch.no_grad():
        assert torch.equal(lam.encode(video)[0].actions, model.lam.encode(video)[0].actions)
        acts = torch.randint(0, 6, (2, 4))
        torch.testing.assert_close(dyn.logits(tokens, acts), model.dynamics.logits(tokens, acts))
    resumed = genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, tok, tmp_path,
                                        "--trainer.max_steps", "5", "--ckpt_path", "last"))  # fmt: skip
    assert resumed.trainer.global_step == 5  # continued from step 3
    for sub, stage in (("validate", "val"), ("test", "test")):
        metrics = genie_cli.main(genie_args(sub, "genie.tiny.yaml", tiny_root, tok, tmp_path, "--ckpt_path", str(last)))
        logged = metrics.trainer.callback_metrics
        assert {f"{stage}/dyn_loss", f"{stage}/lam_psnr", f"{stage}/nmi_true_actions"} <= set(logged)
        assert 0.0 <= float(logged[f"{stage}/nmi_true_actions"]) <= 1.0
    with pytest.raises(CheckpointError, match="no 'lam' network"):
        LatentAction.from_checkpoint(str(tok))


def test_a_tokenizer_that_cannot_serve_genie_is_refused_before_training(tmp_path, tiny_root, tokenizers):
    timed = tokenizer_checkpoint(
        tmp_path / "timed.ckpt",
        "tokenize.tiny.yaml",
        dec_desc=[
            ["causal", {"in_channels": 10, "out_channels": 32}],
            ["spacetime_upsample", {"in_channels": 32, "time_factor": 2, "space_factor": 4}],
            ["proj_out", {"in_channels": 32, "out_channels": 3, "num_groups": 8}],
        ],
        enc_desc=[
            ["causal", {"in_channels": 3, "out_channels": 32}],
            ["residual", {"in_channels": 32, "downsample": [2, 4]}],
            ["proj_out", {"in_channels": 32, "out_channels": 10, "num_groups": 8}],
        ],
    )
    with pytest.raises(CheckpointError, match="one token grid per frame"):
        genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, timed, tmp_path, "--trainer.fast_dev_run", "1"))
    with pytest.raises(MissingCheckpointError):
        genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, tmp_path / "nope.ckpt", tmp_path))
    args = genie_args("fit", "genie.tiny.yaml", tiny_root, tmp_path / "nope.ckpt", tmp_path)
    run = subprocess.run([sys.executable, str(REPO / "genie.py"), *args], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)  # fmt: skip
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].startswith("genie.py: error: no checkpoint at")


def test_recorded_actions_drive_the_dynamics_for_the_ceiling(tmp_path, tiny_root, tokenizers, monkeypatch):
    """`--model.action_source recorded`: the dynamics model takes CoinRun's 15 recorded actions
    (GenieRedux's ground-truth variant); the checkpoint says so, and evaluation follows it."""
    monkeypatch.chdir(tmp_path)
    tok = tokenizers["genie.tiny.yaml"]
    recorded = ["--model.action_source", "recorded"]
    cli = genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, tok, tmp_path, *recorded,
                                    "--trainer.max_steps", "2", "--trainer.val_check_interval", "2"))  # fmt: skip
    assert cli.model.dynamics.act_vocab == 15 and cli.model.lam.num_actions == 6
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["action_source"] == "recorded"
    assert load_world(str(last), str(tok)).action_source == "recorded"
    ev = ["--checkpoint", str(last), "--tokenizer_checkpoint", str(tok), "--root", str(tiny_root), "--clips", "2",
          "--batch_size", "2", "--steps", "2", "--probe_frames", "3", "--probe_clips", "0",
          "--out", str(tmp_path / "ev")]  # fmt: skip
    assert evaluate_cli.main(ev) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["action_source"] == "recorded" and len(report["control"]["model"]["dx"]) == 15
    assert report["control"]["model"]["actions"] == report["control"]["game"]["actions"]  # the game's buttons
    assert (tmp_path / "ev" / "control.png").is_file()
    bundle = load_script("scripts/bundle.py", "bundle_script")
    with pytest.raises(SystemExit):  # a greedy shift rule for a model without a scroll head is refused
        bundle.main(["--checkpoint", str(last), "--tokenizer_checkpoint", str(tok), "--root", str(tiny_root),
                     "--out", str(tmp_path / "res"), "--shift_pick", "mode"])  # fmt: skip
    assert not (tmp_path / "res" / "genie.ckpt").exists()
    with pytest.raises(CheckpointError, match="15 recorded actions"):
        genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, tok, tmp_path / "x", *recorded,
                                  "--model.recorded_actions", "9", "--trainer.fast_dev_run", "1"))  # fmt: skip


def test_a_rerun_replaces_the_tokenizer_that_stage_2_reads(tmp_path, tiny_root, monkeypatch):
    """The presets as a user runs them (paths relative to the working directory): training the
    tiny tokenizer twice leaves one `last.ckpt`, the second run's, and stage 2 loads that one."""
    monkeypatch.chdir(tmp_path)
    tokenizer_cli = load_script("tokenizer.py", "tokenizer_script")
    small = ["--data.root", str(tiny_root), "--data.num_frames", "4", "--data.batch_size", "2", "--data.num_workers",
             "0", "--data.eval_clips", "2", "--trainer.enable_progress_bar", "false"]  # fmt: skip

    def fit_tokenizer(seed: int) -> dict[str, torch.Tensor]:
        preset = str(REPO / "config" / "tokenize.tiny.yaml")
        cli = tokenizer_cli.main(["fit", "-c", preset, *small, "--seed_everything", str(seed),
                                  "--trainer.max_steps", "1", "--trainer.val_check_interval", "1"])  # fmt: skip
        return {k: v.clone() for k, v in cli.model.tokenizer.state_dict().items()}

    first, second = fit_tokenizer(0), fit_tokenizer(1)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.ckpt"))
    assert "runs/tokenizer.tiny/checkpoints/last.ckpt" in names and not any("-v1" in n for n in names)
    stage2 = genie_cli.main(["fit", "-c", str(REPO / "config" / "genie.tiny.yaml"), *small, "--model.sample_steps", "3",
                             "--trainer.fast_dev_run", "1"])  # fmt: skip
    used = stage2.model.tokenizer.state_dict()
    key = next(k for k in used if k.endswith("weight"))
    assert torch.equal(used[key], second[key]) and not torch.equal(used[key], first[key])
