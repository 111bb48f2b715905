"""Both stages under DDP on CPU: 2 processes, gloo, the config/multigpu.ddp.yaml overlay.

What a multi-GPU run relies on, checked on two CPU processes: each process trains on
different clips, the replicas stay bit-identical (the LAM's codebook restarts included),
validation covers the clip set, and rank 0 alone writes one checkpoint and one log, which
load back. Also that both overlays parse on top of the presets and build their strategies.
"""

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

from genie.action import LatentAction
from genie.data import VideoDataModule
from genie.dynamics import DynamicsModel
from genie.tokenizer import VideoTokenizer
from helpers import rank_log
from helpers.stage2 import load_script

REPO = Path(__file__).resolve().parents[1]
HELPERS = REPO / "tests" / "helpers"
STEPS, BATCH, WORLD = 3, 2, 2
SMALL = ["--data.num_frames", "4", "--data.batch_size", str(BATCH), "--data.num_workers", "0",
         "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", str(STEPS),
         "--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip


def _ddp_fit(script: str, preset: str, run: Path, tiny_root: Path, *extra: str) -> list[dict]:
    """`<script> fit -c <preset> -c multigpu.ddp.yaml` on 2 CPU processes in `run`; each rank's RankLog record."""
    args = [sys.executable, str(REPO / script), "fit", "-c", str(REPO / "config" / preset),
            "-c", str(REPO / "config" / "multigpu.ddp.yaml"), "--trainer.accelerator", "cpu",
            "--trainer.devices", str(WORLD), "--trainer.default_root_dir", str(run), "--data.root", str(tiny_root),
            *SMALL, "--trainer.callbacks+=rank_log.RankLog", "--trainer.callbacks.out_dir", str(run / "ranks"),
            *extra]  # fmt: skip
    # PYTHONPATH: every rank imports RankLog; one thread per rank: 2 ranks on 2 cores, no oversubscription.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), str(REPO)]), "OMP_NUM_THREADS": "1"}
    # cwd=run: nothing lands in the repository, whatever a preset writes.
    proc = subprocess.run(args, cwd=run, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((run / "ranks" / f"rank{r}.json").read_text()) for r in range(WORLD)]


def _check_run(run: Path, ranks: list[dict]) -> Path:
    """Common to both stages; returns rank 0's checkpoint."""
    assert [r["rank"] for r in ranks] == list(range(WORLD)) and all(r["world_size"] == WORLD for r in ranks)
    # --- each process trained on its own clips (Lightning's DistributedSampler over ClipDataset) ---
    train = [r["train"] for r in ranks]
    assert all(len(t) == len(set(t)) == STEPS * BATCH for t in train)  # no clip twice in a process
    assert not set(train[0]) & set(train[1])  # nor in both
    # --- the replicas ended bit-identical: gradients all-reduced, VQ restarts broadcast ---
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # --- every process holds every metric, so any can be a checkpoint monitor ---
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and any(m.startswith("val/") for m in ranks[0]["metrics"])
    # --- rank 0 alone wrote one checkpoint set and one log ---
    ckpts = sorted(p.relative_to(run).as_posix() for p in run.rglob("*.ckpt"))
    assert ckpts == ["checkpoints/last.ckpt"]  # under --trainer.default_root_dir
    assert [p.name for p in (run / "lightning_logs").iterdir()] == ["version_0"]
    log = run / "lightning_logs" / "version_0"
    assert (log / "config.yaml").is_file() and len(list((log / "images").iterdir())) == 1
    with open(log / "metrics.csv") as f:
        val_rows = [row for row in csv.DictReader(f) if row["val/loss"]]
    assert len(val_rows) == 1  # one validation, logged once (not once per process)
    return run / ckpts[0]


def _val_set(tiny_root: Path, eval_clips: int) -> list[str]:
    data = VideoDataModule(str(tiny_root), num_frames=4, batch_size=eval_clips, num_workers=0, eval_clips=eval_clips)
    return rank_log.clip_fingerprints(next(iter(data.val_dataloader())))


def test_ddp_fit_of_both_stages(tmp_path, tiny_root):
    # --- stage 1: 3 validation clips over 2 processes ---
    run1 = tmp_path / "tokenizer"
    run1.mkdir()
    ranks = _ddp_fit("tokenizer.py", "tokenize.tiny.yaml", run1, tiny_root, "--data.eval_clips", "3")
    tokenizer_ckpt = _check_run(run1, ranks)
    tokenizer = VideoTokenizer.from_checkpoint(str(tokenizer_ckpt))
    assert rank_log.weights_fingerprint(tokenizer) == ranks[0]["weights"]["tokenizer"]
    # Lightning's DistributedSampler pads the evaluation set to a multiple of the process count
    # by repeating its first clips: every clip is validated, n % WORLD of them twice.
    val = Counter(ranks[0]["val"] + ranks[1]["val"])
    assert set(val) == set(_val_set(tiny_root, 3)) and sorted(val.values()) == [1, 1, 2]

    # --- stage 2 on the tokenizer stage 1 just wrote; restarts on, so the VQ's DDP branch runs ---
    run2 = tmp_path / "genie"
    run2.mkdir()
    ranks = _ddp_fit("genie.py", "genie.tiny.yaml", run2, tiny_root, "--data.eval_clips", "4",
                     "--model.tokenizer_ckpt_path", str(tokenizer_ckpt), "--model.sample_steps", "2",
                     "--model.lam.init_args.dead_fraction", "1.0")  # fmt: skip
    genie_ckpt = _check_run(run2, ranks)
    lam, dynamics = LatentAction.from_checkpoint(str(genie_ckpt)), DynamicsModel.from_checkpoint(str(genie_ckpt))
    assert rank_log.weights_fingerprint(lam) == ranks[0]["weights"]["lam"]
    assert rank_log.weights_fingerprint(dynamics) == ranks[0]["weights"]["dynamics"]
    assert int(lam.quantizer.restarts) > 0  # codes were restarted, yet the replicas agree (above)
    # A multiple of the process count: every validation clip exactly once, nothing repeated.
    assert sorted(ranks[0]["val"] + ranks[1]["val"]) == sorted(_val_set(tiny_root, 4))


@pytest.mark.parametrize(
    "script, preset, overlay, strategy",
    [
        ("tokenizer.py", "tokenize.yaml", "multigpu.ddp.yaml", DDPStrategy),
        ("genie.py", "genie.yaml", "multigpu.ddp.yaml", DDPStrategy),
        ("tokenizer.py", "tokenize.yaml", "multigpu.fsdp.yaml", FSDPStrategy),
        ("genie.py", "genie.yaml", "multigpu.fsdp.yaml", FSDPStrategy),
    ],
)
def test_overlays_merge_into_the_presets(script, preset, overlay, strategy, capsys):
    cli = load_script(script, script.removesuffix(".py") + "_script")
    with pytest.raises(SystemExit) as done:
        cli.main(["fit", "-c", str(REPO / "config" / preset), "-c", str(REPO / "config" / overlay), "--print_config"])
    assert done.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    preset_trainer = yaml.safe_load((REPO / "config" / preset).read_text())["trainer"]
    trainer = config["trainer"]
    assert trainer["precision"] == preset_trainer["precision"] and trainer["max_steps"] == preset_trainer["max_steps"]
    assert trainer["accelerator"] == "gpu" and trainer["num_nodes"] == 1 and trainer["devices"] == "auto"
    spec = trainer["strategy"]
    assert spec["class_path"].rsplit(".", 1)[-1] == strategy.__name__
    built = strategy(**spec["init_args"])  # the options are ones this Lightning accepts
    if strategy is FSDPStrategy:
        assert built._state_dict_type == "full"  # one checkpoint file that from_checkpoint reads
