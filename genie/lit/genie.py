"""Stage 2 training: the latent action model and the dynamics model, together (used by `genie.py`).

Genie Sec. 2.2: with the video tokenizer trained and frozen, the LAM and the dynamics model
are trained at the same time (a peer that trained them apart lost controllability). Each
step tokenizes the clip with the frozen tokenizer (on the training device, no gradient),
infers a latent action per transition with the LAM from pixels, and trains the dynamics
model to predict masked tokens from past tokens and those actions (integer ids: no gradient
flows back into the LAM). Loss = LAM loss + dynamics loss, one AdamW.

Linked, never typed twice: the dynamics vocabulary is the tokenizer checkpoint's codebook
size and its action count is the LAM's `num_actions` (`dynamics` is built by this module).

`action_source: recorded` trains the dynamics model on the game's recorded actions instead of
the LAM's (GenieRedux's "-G" variant, Kazemi et al. 2024): the same network and budget with
the true controls, so its numbers are the ceiling the latent actions are held to. The LAM is
still trained beside it, so its metrics stay comparable.
The frozen tokenizer's weights stay out of the Genie checkpoint (it records the tokenizer's
path and configuration instead); resuming reloads them from `tokenizer_ckpt_path`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from einops import rearrange

from genie import maskgit
from genie.action import LatentAction
from genie.checkpoints import CheckpointError, require_frame_tokens, require_same_vocabulary, store_network
from genie.data import Clip, VideoDataModule
from genie.dynamics import DynamicsModel
from genie.lit.fast import adamw, compile_methods
from genie.lit.images import pair_grid
from genie.lit.schedule import warmup_cosine_scheduler
from genie.media import save_png
from genie.metrics import codebook_usage_from_counts, contingency_table, count_ids, nmi_from_contingency, psnr
from genie.record import PROCGEN_ACTIONS
from genie.tokenizer import VideoTokenizer

# what a checkpoint keeps of the data's metadata.json: enough to say what one generated step is
DATA_FACTS = ("env_name", "distribution_mode", "policy", "action_repeat", "frame_skip")


class GenieTraining(L.LightningModule):
    """Trains a `LatentAction` and a `DynamicsModel` on clips, tokenizer frozen (Genie App. F, Table 17).

    Args:
        tokenizer_ckpt_path: checkpoint written by `tokenizer.py fit`.
        lam: the latent action model.
        dynamics: the dynamics model without its vocabularies and clip length (`tok_vocab` and
            `token_levels` from the tokenizer, `act_vocab` and `max_frames` from the LAM, whose
            `max_frames` the command line links to `data.num_frames`).
        lr: peak learning rate (AdamW).
        min_lr: learning rate reached at `trainer.max_steps` (cosine).
        betas: AdamW betas.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        grad_clip: gradient-norm clipping (None: none).
        sample_steps: MaskGIT steps when sampling (validation rollouts; play.py's default).
        sample_temperature: sampling temperature (validation rollouts; play.py's default).
        image_frames: frames per clip in the logged image grids.
        compile: `torch.compile` the LAM's and the dynamics model's loss functions and the
            frozen tokenizer's `tokenize` (the first steps then take minutes longer).
        action_source: what drives the dynamics model: `latent` (the LAM's actions, Genie) or
            `recorded` (the game's actions: the ground-truth ceiling).
        recorded_actions: size of the recorded action space (every procgen game: 15 button
            combos); checked against the data's metadata when training starts.
    """

    NETWORKS = ("lam", "dynamics")  # what its checkpoints hold (`store_network`), checked by --ckpt_path

    def __init__(
        self,
        tokenizer_ckpt_path: str,
        lam: LatentAction,
        dynamics: Callable[[int, int, int], DynamicsModel],
        lr: float = 3e-5,
        min_lr: float = 3e-6,
        betas: tuple[float, float] = (0.9, 0.9),
        weight_decay: float = 1e-4,
        warmup_steps: int = 5_000,
        grad_clip: float | None = 1.0,
        sample_steps: int = maskgit.STEPS,
        sample_temperature: float = 1.0,
        image_frames: int = 8,
        compile: bool = False,
        action_source: Literal["latent", "recorded"] = "latent",
        recorded_actions: int = PROCGEN_ACTIONS,
    ):
        super().__init__()
        if action_source not in ("latent", "recorded"):
            raise ValueError(f"action_source must be 'latent' or 'recorded', got {action_source!r}")
        self.save_hyperparameters(ignore=["lam", "dynamics"])
        self.tokenizer = load_frozen_tokenizer(tokenizer_ckpt_path)
        self.lam = lam
        self.recorded = action_source == "recorded"
        actions = recorded_actions if self.recorded else lam.num_actions
        self.dynamics = dynamics(self.tokenizer.codebook_size, actions, lam.max_frames,
                                 token_levels=self.tokenizer.token_levels).attach(self.tokenizer)
        k = lam.num_actions
        self.register_buffer("action_counts", torch.zeros(k, dtype=torch.long), persistent=False)
        self.register_buffer("contingency", torch.zeros(k, recorded_actions, dtype=torch.long), persistent=False)
        self.trained_on: dict = {}  # the recorded data's own description, set when training starts

    def train(self, mode: bool = True) -> GenieTraining:
        super().train(mode)
        self.tokenizer.eval()  # frozen, always
        return self

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, VideoDataModule):  # the recorded actions: the dynamics' or the NMI table's
            return
        try:
            n = datamodule.metadata.get("num_actions")
        except FileNotFoundError:  # no data: the data module says so itself
            return
        if n is not None and n != self.hparams.recorded_actions:
            raise CheckpointError(f"the data has {n} recorded actions, but model.recorded_actions is "
                                  f"{self.hparams.recorded_actions}")  # fmt: skip
        # what one step of the data is (policy, game frames per step): play.py and the bundle say it
        self.trained_on = {k: v for k, v in datamodule.metadata.items() if k in DATA_FACTS}

    def configure_model(self) -> None:
        if self.hparams.compile:
            compile_methods(self.lam, "compute_losses")
            compile_methods(self.dynamics, "compute_losses")
            compile_methods(self.tokenizer, "tokenize")

    # --- optimisation ---
    def configure_optimizers(self):
        hp = self.hparams
        params = [p for n, p in self.named_parameters() if not n.startswith("tokenizer.")]
        opt = adamw(params, lr=hp.lr, betas=hp.betas, weight_decay=hp.weight_decay)
        sched = warmup_cosine_scheduler(opt, self, lr=hp.lr, min_lr=hp.min_lr, warmup_steps=hp.warmup_steps)
        return [opt], [{"scheduler": sched, "interval": "step"}]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    @torch.no_grad()
    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        """Token ids `(b t h w)` of a clip from the frozen tokenizer."""
        return self.tokenizer.tokenize(video).indices

    def _losses(self, batch: Clip):
        """Tokens, LAM losses, dynamics losses and the actions that drove the dynamics `(b T-1)`."""
        tokens = self.tokenize(batch.video)
        shifts = None
        if self.lam.motion_shift and self.lam.motion_shift == self.dynamics.scroll:  # both read the same shifts
            shifts = self.dynamics.scroller.shifts(rearrange(batch.video, "b c t h w -> b t c h w").float())
        lam = self.lam.compute_losses(batch.video, shifts)
        actions = batch.actions[:, : tokens.shape[1] - 1] if self.recorded else lam.actions
        dyn = self.dynamics.compute_losses(tokens, actions, batch.video, shifts)  # integer ids: stop-gradient
        return tokens, lam, dyn, actions

    def training_step(self, batch: Clip, batch_idx: int) -> torch.Tensor:
        _, lam, dyn, _ = self._losses(batch)
        loss = lam.loss + dyn.loss
        usage = codebook_usage_from_counts(count_ids(lam.actions, self.lam.num_actions))
        self.log_dict(
            {
                "train/loss": loss.detach(),
                "train/dyn_loss": dyn.loss.detach(),
                "train/dyn_acc": dyn.accuracy,
                **self._shift_metrics(dyn, "train"),
                **{f"train/lam_{k}": v.detach() for k, v in lam.terms.items()},
                "train/action_perplexity": usage.perplexity,
                "train/action_restarts": self.lam.quantizer.restarts.float(),
            }
        )
        return loss

    @staticmethod
    def _shift_metrics(dyn, stage: str) -> dict:
        """With the dynamics' `scroll`: its shift loss and accuracy (part of `dyn_loss` already)."""
        if dyn.shift_loss is None:
            return {}
        return {f"{stage}/dyn_shift_loss": dyn.shift_loss, f"{stage}/dyn_shift_acc": dyn.shift_accuracy}

    # --- evaluation ---
    def validation_step(self, batch: Clip, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Clip, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: Clip, batch_idx: int) -> torch.Tensor:
        """Latent actions `(b T-1)` of each clip."""
        return self.lam.encode(batch.video)[0].actions

    def _evaluate(self, batch: Clip, batch_idx: int, stage: str) -> None:
        tokens, lam, dyn, actions = self._losses(batch)
        video = batch.video
        metrics = {
            f"{stage}/loss": lam.loss + dyn.loss,
            f"{stage}/dyn_loss": dyn.loss,
            f"{stage}/dyn_acc": dyn.accuracy,
            **self._shift_metrics(dyn, stage),
            **{f"{stage}/lam_{k}": v for k, v in lam.terms.items()},
            f"{stage}/lam_psnr": psnr(lam.recon[:, :, 1:].float().clamp(-1, 1), video[:, :, 1:]).mean(),
        }
        self.log_dict(metrics, sync_dist=True, batch_size=video.shape[0])
        k = self.lam.num_actions
        self.action_counts += count_ids(lam.actions, k)
        true = batch.actions[:, : lam.actions.shape[1]]
        self.contingency += contingency_table(lam.actions, true, k, self.hparams.recorded_actions)
        if batch_idx == 0:
            self._rollout(video, tokens, actions, stage)

    def _rollout(self, video: torch.Tensor, tokens: torch.Tensor, actions: torch.Tensor, stage: str) -> None:
        """The last frame of each clip generated from the frames before it and the actions that drive the dynamics."""
        hp = self.hparams
        gen = self.dynamics.generate(tokens[:, :-1], actions, steps=hp.sample_steps, temperature=hp.sample_temperature)
        fake = self.tokenizer.decode(gen).float().clamp(-1, 1)
        self.log(f"{stage}/next_frame_psnr", psnr(fake[:, :, -1:], video[:, :, -1:]).mean(), sync_dist=True)
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        n = min(hp.image_frames, video.shape[2])
        logger = self.logger
        if logger is not None and logger.log_dir:
            name = f"{stage}_next_frame_step{self.global_step:07d}.png"  # last column: generated
            save_png(Path(logger.log_dir) / "images" / name, pair_grid(video[:, :, -n:], fake[:, :, -n:]))

    def on_validation_epoch_start(self) -> None:
        self.action_counts.zero_()
        self.contingency.zero_()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._log_actions("val")

    def on_test_epoch_end(self) -> None:
        self._log_actions("test")

    def _log_actions(self, stage: str) -> None:
        counts, table = self.action_counts, self.contingency
        if self.trainer.world_size > 1:
            counts, table = self.all_gather(counts).sum(0), self.all_gather(table).sum(0)
        usage = codebook_usage_from_counts(counts)
        share = counts.float() / counts.sum().clamp(min=1)
        self.log_dict(
            {
                f"{stage}/action_perplexity": usage.perplexity,
                f"{stage}/actions_used": usage.fraction_used,
                f"{stage}/nmi_true_actions": nmi_from_contingency(table),
                **{f"{stage}/action_share_{i}": share[i] for i in range(len(share))},
            },
            sync_dist=True,  # summed counts: equal everywhere, so averaging them is a no-op that marks them global
        )

    # --- checkpoints ---
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        store_network(checkpoint, "lam", self.lam.config)
        store_network(checkpoint, "dynamics", self.dynamics.config)
        checkpoint["action_source"] = self.hparams.action_source
        if self.trained_on:
            checkpoint["data"] = self.trained_on
        checkpoint["tokenizer"] = {
            "path": str(self.hparams.tokenizer_ckpt_path),
            "config": self.tokenizer.config,
            "codebook_size": self.tokenizer.codebook_size,
        }
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("tokenizer.")]:
            del state[key]  # frozen and stored in its own checkpoint

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        stored = checkpoint.get("tokenizer", {})
        require_same_vocabulary(stored.get("codebook_size"), self.tokenizer.codebook_size, "this Genie checkpoint",
                                self.hparams.tokenizer_ckpt_path, stored.get("path"))  # fmt: skip
        state = checkpoint["state_dict"]
        state.update({f"tokenizer.{k}": v for k, v in self.tokenizer.state_dict().items()})


def load_frozen_tokenizer(path: str | Path) -> VideoTokenizer:
    """The stage-1 tokenizer, frozen, with a clear error if the checkpoint cannot serve Genie."""
    tokenizer = VideoTokenizer.from_checkpoint(str(path))
    require_frame_tokens(tokenizer.downsampling[0], path)
    tokenizer.eval().requires_grad_(False)
    return tokenizer
