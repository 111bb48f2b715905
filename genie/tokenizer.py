"""Genie's video tokenizer (stage 1): a causal MagViT-2 encoder/decoder with LFQ (or FSQ).

Shape legend: b batch, c channels, t frames, h w pixels; t' h' w' the token grid;
d = d_codebook * n_codebook code channels.

    video (b 3 t h w) --encoder--> z (b d t' h' w') --LFQ/FSQ--> codes in [-1, 1] / indices (b t' h' w')
                                                   codes --decoder--> video (b 3 t h w)

The encoder and decoder are blueprints (`genie.blueprint`); every block is causal in time,
so frame t's tokens depend on frames <= t only and a single prompt image tokenizes on its
own (Genie needs this to play from one image). Losses: MSE reconstruction, the LFQ terms,
and optionally a perceptual loss (VGG16) and a hinge GAN on single frames. The network
computes losses; *when* the GAN starts and the optimizers live in `genie.lit.tokenizer`.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genie.blocks import FrameStream
from genie.blueprint import Blueprint, Stack
from genie.discriminator import FrameDiscriminator, hinge_d_loss, hinge_g_loss
from genie.quantize import FSQ, LFQ

# README-example-shaped presets: time x2 and space x4 down-sampling into the code ("code" is the
# quantizer's width, see `genie.blueprint.Stack`; by default 18 LFQ bits, 2^18 codes, MagViT-2's
# vocabulary). Genie's CoinRun tokenizer (no time down-sampling, 10 bits) is described in
# config/tokenize.yaml with the same blocks.
MAGVIT2_ENC_DESC: Blueprint = (
    ("causal", {"in_channels": 3, "out_channels": 64, "kernel_size": 3}),
    ("residual", {"n_rep": 2, "in_channels": 64}),
    ("residual", {"in_channels": 64, "out_channels": 128, "downsample": (1, 2), "use_blur": True}),
    ("residual", {"n_rep": 2, "in_channels": 128}),
    ("residual", {"in_channels": 128, "out_channels": 256, "downsample": 2, "use_blur": True}),
    ("residual", {"n_rep": 2, "in_channels": 256}),
    ("proj_out", {"in_channels": 256, "out_channels": "code", "num_groups": 8, "kernel_size": 3}),
)
MAGVIT2_DEC_DESC: Blueprint = (
    ("causal", {"in_channels": "code", "out_channels": 256, "kernel_size": 3}),
    ("residual", {"n_rep": 2, "in_channels": 256}),
    ("spacetime_upsample", {"in_channels": 256, "out_channels": 128, "time_factor": 2, "space_factor": 2}),
    ("residual", {"n_rep": 2, "in_channels": 128}),
    ("spacetime_upsample", {"in_channels": 128, "out_channels": 64, "time_factor": 1, "space_factor": 2}),
    ("residual", {"n_rep": 2, "in_channels": 64}),
    ("proj_out", {"in_channels": 64, "out_channels": 3, "num_groups": 8, "kernel_size": 3}),
)
PERC_FEAT_LAYERS = ("features.6", "features.13", "features.18", "features.25")


class Tokens(NamedTuple):
    codes: torch.Tensor  # (b d t' h' w'): {-1, +1} (LFQ) or the FSQ grid in [-1, 1]
    indices: torch.Tensor  # (b t' h' w') int64 (one codebook), else (b t' h' w' n)


class Losses(NamedTuple):
    loss: torch.Tensor  # weighted total for the encoder/decoder
    terms: dict[str, torch.Tensor]  # every term by name, unweighted
    rec: torch.Tensor  # (b c t h w) reconstruction
    indices: torch.Tensor  # token indices, for code-usage statistics


class TokenizerLoss(NamedTuple):
    loss: torch.Tensor
    aux_losses: dict[str, torch.Tensor]


class VideoTokenizer(nn.Module):
    """Causal video tokenizer; keyword arguments as in the README's Python API.

    Args:
        enc_desc: encoder blueprint; its output channels feed the quantizer.
        dec_desc: decoder blueprint; its input channels are the encoder's output channels.
            Both may write the code width (`d_codebook * n_codebook`, or `len(fsq_levels)`)
            as `"code"`; with another width LFQ projects to and from the code.
        disc_kwargs: `FrameDiscriminator` arguments; None disables the GAN loss.
        d_codebook: LFQ bits per codebook (codebook size 2**d_codebook).
        n_codebook: number of codebooks.
        quantizer: 'lfq' (MagViT-2's lookup-free quantizer, the paper's and the default) or 'fsq'
            (finite scalar quantization over `fsq_levels`; no auxiliary loss).
        fsq_levels: values per FSQ dimension; the codebook has prod(fsq_levels) codes (e.g.
            [8, 5, 5, 5]: 1000). The `d_codebook`/`n_codebook`/`lfq_*` arguments then do nothing.
        lfq_norm: scale the quantizer's input to unit RMS per token before LFQ (see `genie.quantize.LFQ`).
        lfq_bias: bias of LFQ's projections (used only when widths differ).
        lfq_frac_sample: fraction of tokens for LFQ's entropy terms.
        lfq_commit_weight, lfq_entropy_weight, lfq_diversity_weight: LFQ loss weights.
        perceptual_model: 'vgg16' for a perceptual loss (needs the ImageNet weights file; see
            `genie.perceptual`), None for none.
        perc_feat_layers: VGG16 layers compared by the perceptual loss.
        perceptual_weights: explicit path of the VGG16 weights (else the torch hub cache).
        gan_discriminate: what the discriminator sees; only 'frames' (single frames).
        gan_frames_per_batch: frames drawn from each video for the GAN terms.
        gan_loss_weight, perc_loss_weight, quant_loss_weight: weights of those losses.
    """

    def __init__(
        self,
        enc_desc: Blueprint = MAGVIT2_ENC_DESC,
        dec_desc: Blueprint = MAGVIT2_DEC_DESC,
        disc_kwargs: dict[str, Any] | None = None,
        d_codebook: int = 18,
        n_codebook: int = 1,
        quantizer: str = "lfq",
        fsq_levels: list[int] | None = None,
        lfq_norm: bool = False,
        lfq_bias: bool = True,
        lfq_frac_sample: float = 1.0,
        lfq_commit_weight: float = 0.25,
        lfq_entropy_weight: float = 0.1,
        lfq_diversity_weight: float = 1.0,
        perceptual_model: str | None = None,
        perc_feat_layers: tuple[str, ...] = PERC_FEAT_LAYERS,
        perceptual_weights: str | None = None,
        gan_discriminate: str = "frames",
        gan_frames_per_batch: int = 4,
        gan_loss_weight: float = 1.0,
        perc_loss_weight: float = 1.0,
        quant_loss_weight: float = 1.0,
    ):
        super().__init__()
        # Everything needed to rebuild this network (checkpoints store it; see from_checkpoint).
        self.config = copy.deepcopy({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if gan_discriminate != "frames":
            raise ValueError(f"gan_discriminate={gan_discriminate!r}: only 'frames' is implemented")
        # the code width, which the blueprints may call "code" instead of retyping it
        widths = {"code": len(fsq_levels or ()) if quantizer == "fsq" else d_codebook * n_codebook}
        self.encoder = Stack(enc_desc, "enc_desc", widths)
        self.decoder = Stack(dec_desc, "dec_desc", widths)
        if quantizer == "fsq":
            if not fsq_levels:
                raise ValueError("quantizer='fsq' needs fsq_levels, e.g. [8, 5, 5, 5] for 1000 codes")
            self.quantizer: LFQ | FSQ = FSQ(self.encoder.out_channels, fsq_levels, bias=lfq_bias)
        elif quantizer == "lfq":
            self.quantizer = LFQ(
                self.encoder.out_channels, d_codebook, n_codebook, bias=lfq_bias, frac_sample=lfq_frac_sample,
                commit_weight=lfq_commit_weight, entropy_weight=lfq_entropy_weight,
                diversity_weight=lfq_diversity_weight, norm=lfq_norm,
            )  # fmt: skip
        else:
            raise ValueError(f"quantizer={quantizer!r}: expected 'lfq' or 'fsq'")
        if self.decoder.in_channels != self.encoder.out_channels:
            raise ValueError(
                f"dec_desc takes {self.decoder.in_channels} channels but enc_desc outputs {self.encoder.out_channels}"
            )
        if (
            self.encoder.time_factor * self.decoder.time_factor != 1
            or self.encoder.space_factor * self.decoder.space_factor != 1
        ):
            enc, dec = self.encoder, self.decoder
            raise ValueError(
                f"decoder up-sampling (time x{dec.time_factor}, space x{dec.space_factor}) does not undo "
                f"encoder down-sampling (time x{enc.time_factor}, space x{enc.space_factor})"
            )
        self.discriminator = FrameDiscriminator(**disc_kwargs) if disc_kwargs else None
        # Kept out of the module tree (a list), so its frozen 59 MB of VGG weights stay out of
        # checkpoints; it follows the input's device when used.
        self._perceptual: list[nn.Module] = []
        if perceptual_model is not None and perc_loss_weight > 0:
            from genie.perceptual import PerceptualLoss

            self._perceptual.append(PerceptualLoss(perceptual_model, tuple(perc_feat_layers), perceptual_weights))
        self.gan_frames_per_batch = gan_frames_per_batch
        self.gan_loss_weight, self.perc_loss_weight, self.quant_loss_weight = (
            gan_loss_weight, perc_loss_weight, quant_loss_weight,
        )  # fmt: skip

    # --- shapes ---
    @property
    def codebook_size(self) -> int:
        """Codes per codebook: the dynamics model's vocabulary."""
        return self.quantizer.codebook_size

    @property
    def token_levels(self) -> list[int] | None:
        """Values per quantizer dimension, whose mixed-radix digits (dimension 0 least significant)
        each token id is: FSQ's levels, `[2] * bits` for one LFQ codebook (None for several)."""
        return self.quantizer.levels

    def code_table(self) -> torch.Tensor:
        """`(V d)`: the quantizer's code of every token id, what `decode` reads for each (the
        `values` of `DynamicsModel.generate_expected`, whose means `decode` also accepts)."""
        ids = torch.arange(self.codebook_size, device=next(self.parameters()).device)
        return rearrange(self.quantizer.indices_to_codes(ids.view(1, 1, 1, -1)), "1 d 1 1 v -> v d")

    @property
    def downsampling(self) -> tuple[int, int]:
        """(time, space) factors from pixels to tokens."""
        return int(1 / self.encoder.time_factor), int(1 / self.encoder.space_factor)

    def _check(self, video: torch.Tensor) -> None:
        dt, ds = self.downsampling
        if video.dim() != 5 or video.shape[1] != self.encoder.in_channels:
            raise ValueError(
                f"expected a video (b, {self.encoder.in_channels}, t, h, w), got shape {tuple(video.shape)}"
            )
        t, h, w = video.shape[2:]
        if h % ds or w % ds or t % dt:
            raise ValueError(
                f"frames {h}x{w} x {t} must be divisible by the tokenizer's down-sampling {ds} (space), {dt} (time)"
            )

    # --- the tokenizer proper ---
    def tokenize(self, video: torch.Tensor) -> Tokens:
        """`(b c t h w)` in [-1, 1] -> codes `(b d t' h' w')` and indices `(b t' h' w')`."""
        self._check(video)
        q = self.quantizer(self.encoder(video))
        return Tokens(q.codes, q.indices)

    def decode(self, tokens: torch.Tensor, stream: FrameStream | None = None) -> torch.Tensor:
        """Codes `(b d t' h' w')` (float) or indices `(b t' h' w')` (int) -> video `(b c t h w)`.

        With `stream` (a `FrameStream` of `self.decoder`), `tokens` are the frames that follow
        the ones decoded through it before, and only they are decoded (play)."""
        codes = self.quantizer.indices_to_codes(tokens) if not tokens.is_floating_point() else tokens
        return (stream or self.decoder)(self.quantizer.proj_out(codes))

    def forward(self, video: torch.Tensor) -> TokenizerLoss:
        """Training loss of the encoder/decoder: `loss, aux_losses = tokenizer(video)`."""
        out = self.compute_losses(video)
        return TokenizerLoss(out.loss, out.terms)

    def compute_losses(self, video: torch.Tensor, adversarial: bool = True) -> Losses:
        """All generator-side terms. `adversarial=False` leaves out the GAN term (before the GAN starts)."""
        self._check(video)
        q = self.quantizer(self.encoder(video))
        rec = self.decoder(self.quantizer.proj_out(q.codes))
        terms = {"rec": F.mse_loss(rec, video), "quant": q.loss, **q.terms}
        loss = terms["rec"] + self.quant_loss_weight * q.loss
        if self._perceptual:
            perceptual = self._perceptual[0].to(video.device)
            terms["perceptual"] = perceptual(rec, video)
            loss = loss + self.perc_loss_weight * terms["perceptual"]
        if self.discriminator is not None and adversarial:
            fake = self._gan_frames(rec, self._gan_pick(video))
            terms["gan_g"] = hinge_g_loss(self.discriminator(fake))
            loss = loss + self.gan_loss_weight * terms["gan_g"]
        return Losses(loss, terms, rec, q.indices)

    def discriminator_loss(
        self, video: torch.Tensor, rec: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Hinge loss of the frame discriminator on real frames vs. (detached) reconstructions."""
        if self.discriminator is None:
            raise RuntimeError("this tokenizer has no discriminator (disc_kwargs=None)")
        pick = self._gan_pick(video)
        real_logits = self.discriminator(self._gan_frames(video, pick))
        fake_logits = self.discriminator(self._gan_frames(rec.detach(), pick))
        loss = hinge_d_loss(real_logits, fake_logits)
        return loss, {"gan_d": loss, "d_real": real_logits.mean().detach(), "d_fake": fake_logits.mean().detach()}

    def _gan_pick(self, video: torch.Tensor) -> torch.Tensor:
        t = video.shape[2]
        return torch.randperm(t, device=video.device)[: min(self.gan_frames_per_batch, t)]

    @staticmethod
    def _gan_frames(video: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
        return rearrange(video[:, :, pick], "b c k h w -> (b k) c h w")

    # --- checkpoints ---
    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> VideoTokenizer:
        """Rebuild a trained tokenizer from a `tokenizer.py fit` checkpoint alone."""
        from genie.checkpoints import load_network

        return load_network(cls, path, "tokenizer", map_location)
