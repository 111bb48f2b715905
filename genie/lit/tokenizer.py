"""Stage 1 training: the video tokenizer as a LightningModule (used by `tokenizer.py`).

The network computes its losses (`genie.tokenizer`); this module owns what is about
training: the optimizers (encoder/decoder and, with a GAN, the discriminator, each with
its own loss: one shared loss lets the two fight inside it), when the GAN starts, the
learning-rate schedule, and logging (every loss term by name, PSNR / SSIM, code usage,
reconstructions as images).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from genie.checkpoints import store_network
from genie.data import Clip
from genie.lit.fast import adamw, compile_methods
from genie.lit.images import pair_grid
from genie.lit.schedule import warmup_cosine_scheduler
from genie.media import save_png
from genie.metrics import CodebookCounter, codebook_usage_from_counts, psnr, ssim
from genie.tokenizer import VideoTokenizer


class TokenizerTraining(L.LightningModule):
    """Trains a `VideoTokenizer` on clips (Genie App. F, Table 15 for the CoinRun values).

    Args:
        tokenizer: the network.
        lr: peak learning rate (AdamW).
        min_lr: learning rate reached by the end of `trainer.max_steps` (cosine); equal to
            `lr` for a constant rate after warm-up.
        betas: AdamW betas.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        gan_start_step: step from which the GAN terms are on (with a discriminator).
        grad_clip: gradient-norm clipping of the encoder/decoder (None: none).
        image_frames: frames per video shown in the logged reconstruction grid.
        compile: `torch.compile` the tokenizer's loss functions (the first steps then take
            minutes longer).
    """

    NETWORKS = ("tokenizer",)  # what its checkpoints hold (`store_network`), checked by --ckpt_path

    def __init__(
        self,
        tokenizer: VideoTokenizer,
        lr: float = 3e-4,
        min_lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.9),
        weight_decay: float = 1e-4,
        warmup_steps: int = 10_000,
        gan_start_step: int = 0,
        grad_clip: float | None = 1.0,
        image_frames: int = 8,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer
        self.automatic_optimization = False  # two optimizers, two losses (GAN)
        self.codes = CodebookCounter(tokenizer.codebook_size)

    def configure_model(self) -> None:
        if self.hparams.compile:
            compile_methods(self.tokenizer, "compute_losses", "discriminator_loss")

    # --- optimisation ---
    def configure_optimizers(self):
        hp = self.hparams
        gen = [p for n, p in self.tokenizer.named_parameters() if not n.startswith("discriminator.")]
        opts = [adamw(gen, lr=hp.lr, betas=hp.betas, weight_decay=hp.weight_decay)]
        if self.tokenizer.discriminator is not None:
            disc = self.tokenizer.discriminator.parameters()
            opts.append(adamw(disc, lr=hp.lr, betas=hp.betas, weight_decay=hp.weight_decay))
        sched = dict(lr=hp.lr, min_lr=hp.min_lr, warmup_steps=hp.warmup_steps)
        return opts, [warmup_cosine_scheduler(opt, self, **sched) for opt in opts]

    def training_step(self, batch: Clip, batch_idx: int) -> None:
        opts, scheds = self.optimizers(), self.lr_schedulers()
        opts, scheds = (opts if isinstance(opts, list) else [opts]), (scheds if isinstance(scheds, list) else [scheds])
        gan_on = self.tokenizer.discriminator is not None and self.global_step >= self.hparams.gan_start_step
        out = self.tokenizer.compute_losses(batch.video, adversarial=gan_on)
        opts[0].zero_grad()
        self.manual_backward(out.loss)
        if self.hparams.grad_clip:
            self.clip_gradients(opts[0], gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opts[0].step()
        terms = {f"train/{k}": v.detach() for k, v in out.terms.items()}
        if gan_on:
            d_loss, d_terms = self.tokenizer.discriminator_loss(batch.video, out.rec)
            opts[1].zero_grad()
            self.manual_backward(d_loss)
            # The raw optimizer: a LightningOptimizer step would count as another global step,
            # and trainer.max_steps / gan_start_step are meant in training steps.
            opts[1].optimizer.step()
            scheds[1].step()
            terms.update({f"train/{k}": v.detach() for k, v in d_terms.items()})
        scheds[0].step()
        self.log_dict({"train/loss": out.loss.detach(), **terms}, prog_bar=False)
        self.log("lr", scheds[0].get_last_lr()[0], prog_bar=True)

    # --- evaluation ---
    def validation_step(self, batch: Clip, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Clip, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: Clip, batch_idx: int) -> torch.Tensor:
        """Token indices `(b t' h' w')` of each clip."""
        return self.tokenizer.tokenize(batch.video).indices

    def _evaluate(self, batch: Clip, batch_idx: int, stage: str) -> None:
        out = self.tokenizer.compute_losses(batch.video, adversarial=False)
        rec = out.rec.float().clamp(-1, 1)
        metrics = {
            f"{stage}/loss": out.loss,
            **{f"{stage}/{k}": v for k, v in out.terms.items()},
            f"{stage}/psnr": psnr(rec, batch.video).clamp(max=100).mean(),
            f"{stage}/ssim": ssim(rec, batch.video).mean(),
        }
        self.log_dict(metrics, sync_dist=True, batch_size=batch.video.shape[0])
        self.codes.update(out.indices)
        if batch_idx == 0:
            self._log_images(batch.video, rec, stage)

    def on_validation_epoch_start(self) -> None:
        self.codes.reset()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._log_code_usage("val")

    def on_test_epoch_end(self) -> None:
        self._log_code_usage("test")

    def _log_code_usage(self, stage: str) -> None:
        counts = self.codes.counts.to(self.device)
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).sum(0)
        result = codebook_usage_from_counts(counts)
        # The counts are summed over processes already, so the value is the same everywhere:
        # sync_dist averages equal values (a no-op) and tells Lightning the metric is global.
        self.log(f"{stage}/code_usage", result.fraction_used.float(), sync_dist=True)
        self.log(f"{stage}/code_perplexity", result.perplexity.float(), sync_dist=True)

    def _log_images(self, video: torch.Tensor, rec: torch.Tensor, stage: str) -> None:
        """Real (top) over reconstruction (bottom) for up to 4 clips and `image_frames` frames."""
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        k = self.hparams.image_frames
        grid = pair_grid(video[:, :, :k], rec[:, :, :k])
        logger = self.logger
        if logger is not None and hasattr(logger.experiment, "add_image"):  # TensorBoard
            logger.experiment.add_image(f"{stage}/reconstruction", grid, self.global_step, dataformats="HWC")
        elif logger is not None and logger.log_dir:
            save_png(Path(logger.log_dir) / "images" / f"{stage}_step{self.global_step:07d}.png", grid)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        store_network(checkpoint, "tokenizer", self.tokenizer.config)
