"""Genie's latent action model (LAM, Sec. 2.1 and Fig. 5): discrete actions from unlabelled video.

Shape legend: b batch, c channels, t frames (T of them), H W pixels, p patch size,
h w patch grid (H/p, W/p) and, after the encoder's down-sampling, h' w'; e model width
(n_embd); d = d_codebook (width of an action vector); K = num_actions.

A VQ-VAE over *pixels* (Genie Table 2: pixel input controls better than tokens):

    video (b c T H W) --patches + positions--> (b e T h w) --encoder--> feats (b e T h' w')
    feats[t+1] --mean over space (or the whole grid), linear--> z_t (b T-1 d) --VQ, K codes--> a_t, vector_t
    feats[t] + vector_t --decoder (conditioned blocks)--> frame t+1 (b c T-1 H W)

Alignment: the encoder is causal in time, so feats[t+1] has seen x_0..x_{t+1}
and emits a_t, the action of the transition t -> t+1; the decoder sees feats[<= t], i.e.
frames x_0..x_t, plus a_t, and predicts x_{t+1}. Nothing about x_{t+1} reaches the decoder
except through the K-way action bottleneck. `actions[:, t]` therefore has the same meaning
as the recorded CoinRun actions (`Clip.actions[:, t]` leads from frame t to t+1) and as
the dynamics model's `act_id[:, t]`.

`decoder_context="frame"` (an option, after tinyworlds' LAM, which shows its decoder only the
first frame): the decoder reads frame t's own patches instead of feats[t], time folded into
the batch, so it sees no earlier frame. With the history, CoinRun's momentum tells the
decoder most of where things go next and the action need carry little; without it, the
motion itself must pass through the K-way bottleneck.

`action_readout="grid"` (an option): z_t is a linear map of the whole feature grid of frame t+1
instead of its mean over space. The mean keeps what changed but not where: a scroll of the
whole scene and a change in one corner can average to the same vector, and CoinRun's running
shows as a shift of everything while a jump moves the agent and the camera.

`motion_shift=R` (an option): the action vector a_t is also asked, by a linear head, for the
whole-pixel scene shift (dx, dy) from frame t to t+1, each in -R..R, measured on the frames
themselves (`genie.motion.closest_shift`; no recorded action is used). CoinRun's camera follows
the agent, so the shift is most of what a button does; the reconstruction loss alone spends the
K codes on whatever lowers the pixel error, and a random policy's momentum lets the decoder
guess the motion from the history, so the codes need not carry it. The cross-entropy, weighted
by `motion_weight`, reaches the encoder through the straight-through vectors and sorts the codes
by motion, which a `DynamicsModel(scroll=R)` then reads back.

Departure from the paper, on by default (`predict_delta`): the decoder predicts the change
x_{t+1} - x_t and adds it to x_t. At CoinRun's coarse 16x16-pixel patches, rebuilding the
whole frame from patch features is most of the work; predicting the change leaves the action
to explain what moved.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from genie.blocks import frame_conv
from genie.blueprint import Blueprint, Stack
from genie.motion import closest_shift
from genie.vq import VectorQuantizer

# README-example-shaped presets (n_embd 256): the encoder halves the patch grid, the decoder
# (the README's Python example) doubles it back; decoder blocks are conditioned on the action
# vector (width d_codebook = 8 here). The App. F CoinRun LAM is config/genie.yaml.
LATENT_ACT_ENC: Blueprint = (
    ("space-time_attn", {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16}),
    ("spacetime_downsample", {"in_channels": 256, "kernel_size": 3, "time_factor": 1, "space_factor": 2}),
    ("space-time_attn", {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16}),
)
LATENT_ACT_DEC: Blueprint = (
    ("space-time_attn", {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16, "has_ext": True,
                         "time_attn_kw": {"key_dim": 8}}),
    ("spacetime_upsample", {"in_channels": 256, "kernel_size": 3, "time_factor": 1, "space_factor": 2}),
    ("space-time_attn", {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16, "has_ext": True,
                         "time_attn_kw": {"key_dim": 8}}),
)  # fmt: skip


class ActionEncoding(NamedTuple):
    actions: torch.Tensor  # (b T-1) int64 in [0, K): actions[:, t] leads from frame t to t+1
    encoded: torch.Tensor  # (b T-1 d) quantized action vectors (straight-through gradients)


class LAMLosses(NamedTuple):
    loss: torch.Tensor  # rec + quant_loss_weight * quant
    terms: dict[str, torch.Tensor]  # unweighted terms by name
    recon: torch.Tensor  # (b c T H W): frame 0 as given, frames 1.. predicted
    actions: torch.Tensor  # (b T-1)


class LAMOutput(NamedTuple):
    recon: torch.Tensor
    loss: torch.Tensor
    aux_losses: dict[str, torch.Tensor]


class LatentAction(nn.Module):
    """Latent action model; keyword arguments as in the README's Python API.

    Args:
        enc_desc: encoder blueprint over the patch grid (model width n_embd in and out).
        dec_desc: decoder blueprint; must undo the encoder's spatial down-sampling and hold
            conditioned blocks (`has_ext: true`, `time_attn_kw: {key_dim: d_codebook}`).
        d_codebook: width of an action code vector.
        num_actions: number of latent actions K (App. F: 6 for CoinRun).
        inp_channels: channels of the input frames.
        inp_shape: (H, W) of the input frames.
        n_embd: model width.
        patch_size: pixels per patch side (App. F Table 16: 16 for CoinRun).
        max_frames: longest clip (learned time positions).
        predict_delta: predict x_{t+1} - x_t rather than x_{t+1} (see the module docstring).
        commit_weight: VQ commitment weight.
        dead_fraction: restart a code used below this fraction of 1/K (0: never).
        normalize_codes: l2-normalised (cosine) action codebook (`genie.vq`).
        quant_loss_weight: weight of the VQ loss in the total.
        decoder_context: `history` (frames <= t, as Genie) or `frame` (frame t alone; see the
            module docstring). `frame` needs an encoder that keeps the patch grid.
        action_readout: how a_t is read off the encoder's features of frame t+1: `mean` over
            space (as Genie's pooled encoder output) or `grid`, a linear map of every position
            (see the module docstring).
        motion_shift: largest scene shift R in pixels the action vector is also trained to
            predict (0: off; see the module docstring).
        motion_weight: weight of that shift's cross-entropy in the total.
    """

    def __init__(
        self,
        enc_desc: Blueprint = LATENT_ACT_ENC,
        dec_desc: Blueprint = LATENT_ACT_DEC,
        d_codebook: int = 8,
        num_actions: int = 6,
        inp_channels: int = 3,
        inp_shape: tuple[int, int] = (64, 64),
        n_embd: int = 256,
        patch_size: int = 8,
        max_frames: int = 16,
        predict_delta: bool = True,
        commit_weight: float = 0.25,
        dead_fraction: float = 0.1,
        quant_loss_weight: float = 1.0,
        normalize_codes: bool = False,
        decoder_context: Literal["history", "frame"] = "history",
        action_readout: Literal["mean", "grid"] = "mean",
        motion_shift: int = 0,
        motion_weight: float = 0.1,
    ):
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        H, W = inp_shape
        if H % patch_size or W % patch_size:
            raise ValueError(f"inp_shape {inp_shape} is not divisible by patch_size {patch_size}")
        self.inp_channels, self.inp_shape, self.patch_size = inp_channels, tuple(inp_shape), patch_size
        self.max_frames, self.predict_delta, self.quant_loss_weight = max_frames, predict_delta, quant_loss_weight
        grid = (H // patch_size) * (W // patch_size)
        # --- patches and learned space/time positions (added: attention alone is blind to order) ---
        self.patch = nn.Conv3d(inp_channels, n_embd, (1, patch_size, patch_size), stride=(1, patch_size, patch_size))
        self.pos_space = nn.Parameter(torch.randn(grid, n_embd) * 0.02)
        self.pos_time = nn.Parameter(torch.randn(max_frames, n_embd) * 0.02)
        self.encoder = Stack(enc_desc, "enc_desc")
        self.decoder = Stack(dec_desc, "dec_desc")
        self._check_stacks(n_embd, d_codebook)
        if decoder_context not in ("history", "frame"):
            raise ValueError(f"decoder_context must be 'history' or 'frame', got {decoder_context!r}")
        if decoder_context == "frame" and self.encoder.space_factor != 1:
            raise ValueError("decoder_context='frame' feeds the decoder patches: enc_desc must keep the patch grid")
        self.decoder_context = decoder_context
        # --- action bottleneck ---
        if action_readout not in ("mean", "grid"):
            raise ValueError(f"action_readout must be 'mean' or 'grid', got {action_readout!r}")
        self.action_readout = action_readout
        cells = int(grid * self.encoder.space_factor**2) if action_readout == "grid" else 1  # h' w' positions read
        self.to_action = nn.Sequential(nn.LayerNorm(n_embd), nn.Linear(cells * n_embd, d_codebook))
        self.quantizer = VectorQuantizer(
            num_actions, d_codebook, commit_weight, dead_fraction=dead_fraction, normalize=normalize_codes
        )
        self.to_pixels = nn.Sequential(nn.LayerNorm(n_embd), nn.Linear(n_embd, patch_size**2 * inp_channels))
        if motion_shift < 0 or motion_weight < 0:
            raise ValueError(f"motion_shift and motion_weight must be >= 0, got {motion_shift}, {motion_weight}")
        self.motion_shift, self.motion_weight = motion_shift, motion_weight
        if motion_shift:  # (dx, dy) classes -R..R each, from the action vector alone
            self.motion_head = nn.Linear(d_codebook, 2 * (2 * motion_shift + 1))

    def _check_stacks(self, n_embd: int, d_codebook: int) -> None:
        enc, dec = self.encoder, self.decoder
        for name, stack in (("enc_desc", enc), ("dec_desc", dec)):
            if stack.in_channels != n_embd or stack.out_channels != n_embd:
                channels = f"{stack.in_channels} -> {stack.out_channels}"
                raise ValueError(f"{name} maps {channels} channels; n_embd is {n_embd}")
            if stack.time_factor != 1:
                raise ValueError(f"{name} re-samples time (x{stack.time_factor}); the LAM needs one step per frame")
        if enc.space_factor * dec.space_factor != 1:
            raise ValueError(
                f"dec_desc up-sampling (x{dec.space_factor}) does not undo enc_desc down-sampling (x{enc.space_factor})"
            )
        conditioned = [layer for layer in dec.layers if getattr(layer, "has_ext", False)]
        if not conditioned:
            raise ValueError(
                "dec_desc has no conditioned block (has_ext: true): its decoder would never see the action"
            )
        for layer in conditioned:
            if layer.ext.in_features != d_codebook:
                raise ValueError(
                    f"a dec_desc block takes actions of width {layer.ext.in_features} (time_attn_kw key_dim), "
                    f"but d_codebook={d_codebook}"
                )

    @property
    def num_actions(self) -> int:
        return self.quantizer.num_codes

    # --- encoder: frames -> one action per transition ---
    def encode(self, video: torch.Tensor) -> tuple[ActionEncoding, torch.Tensor]:
        """`(actions, encoded), quant_loss = lam.encode(video)`; see `ActionEncoding`."""
        _, vq = self._encode(video)
        return ActionEncoding(vq.indices, vq.vectors), vq.loss

    def _encode(self, video: torch.Tensor):
        patches, feats, z = self._features(video)
        return (patches if self.decoder_context == "frame" else feats), self.quantizer(z)

    def action_features(self, video: torch.Tensor) -> torch.Tensor:
        """The encoder's action vectors before quantization, `(b T-1 d)` (for probes)."""
        return self._features(video)[2]

    def _features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch embeddings `(b e T h w)`, encoder features `(b e T h' w')`, action vectors `(b T-1 d)`."""
        self._check(video)
        t = video.shape[2]
        x = frame_conv(self.patch, video)  # (b e T h w); per-frame patches, as 2D conv
        h, w = x.shape[-2:]
        pos = self.pos_space[None, :, :] + self.pos_time[:t, None, :]  # (T hw e)
        x = x + rearrange(pos, "t (h w) e -> e t h w", h=h, w=w)
        feats = self.encoder(x)  # (b e T h' w')
        after = rearrange(feats[:, :, 1:], "b e t h w -> b t h w e")  # a_t is read at t+1
        norm, linear = self.to_action
        if self.action_readout == "mean":
            z = linear(norm(reduce(after, "b t h w e -> b t e", "mean")))
        else:
            z = linear(rearrange(norm(after), "b t h w e -> b t (h w e)"))
        return x, feats, z

    # --- decoder: frames <= t and a_t -> frame t+1 ---
    def _decode(self, feats: torch.Tensor, vectors: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """`feats (b e T h' w')`: encoder features, or patch embeddings with `decoder_context='frame'`."""
        if self.decoder_context == "frame":  # each frame its own one-frame clip: no history
            t = feats.shape[2] - 1
            y = self.decoder(rearrange(feats[:, :, :-1], "b e t h w -> (b t) e 1 h w"),
                             ext=rearrange(vectors, "b t d -> (b t) 1 d"))  # fmt: skip
            y = rearrange(y, "(b t) e 1 h w -> b e t h w", t=t)
        else:
            y = self.decoder(feats[:, :, :-1], ext=vectors)  # position t sees frames <= t and a_t
        p = self.patch_size
        out = rearrange(self.to_pixels(rearrange(y, "b e t h w -> b t h w e")),
                        "b t h w (p q c) -> b c t (h p) (w q)", p=p, q=p)  # fmt: skip
        if self.predict_delta:
            out = out + video[:, :, :-1]
        return torch.cat([video[:, :, :1], out], dim=2)  # frame 0 has nothing to predict it

    def decode(self, video: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predict frames 1..T-1 of `video` from the frames before each and chosen `actions (b T-1)`."""
        feats, _ = self._encode(video)
        if actions.shape != (video.shape[0], video.shape[2] - 1):
            raise ValueError(f"expected actions of shape (b, T-1) = {(video.shape[0], video.shape[2] - 1)}")
        return self._decode(feats, self.quantizer.lookup(actions).to(feats.dtype), video)

    # --- training ---
    def forward(self, video: torch.Tensor) -> LAMOutput:
        """`recon, loss, aux_losses = lam(video)`, with `recon.shape == video.shape`."""
        out = self.compute_losses(video)
        return LAMOutput(out.recon, out.loss, out.terms)

    def compute_losses(self, video: torch.Tensor, shifts: torch.Tensor | None = None) -> LAMLosses:
        """With `motion_shift`, `shifts (b T-1 2)` are the clip's scene shifts if already measured
        (`closest_shift` within +-motion_shift, as the dynamics' `scroll` measures them); else measured here."""
        feats, vq = self._encode(video)
        recon = self._decode(feats, vq.vectors, video)
        terms = {"rec": F.mse_loss(recon[:, :, 1:], video[:, :, 1:]), "quant": vq.loss, **vq.terms}
        loss = terms["rec"] + self.quant_loss_weight * vq.loss
        if self.motion_shift:
            terms["motion"], terms["motion_acc"] = self._motion_losses(vq.vectors, video, shifts)
            loss = loss + self.motion_weight * terms["motion"]
        return LAMLosses(loss, terms, recon, vq.indices)

    def _motion_losses(
        self, vectors: torch.Tensor, video: torch.Tensor, shifts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy (summed over dx and dy) of the scene shifts into frames 1.. predicted from
        the action `vectors (b T-1 d)`, and the share of them right."""
        R = self.motion_shift
        if shifts is None:
            with torch.no_grad():
                frames = rearrange(video.float(), "b c t h w -> b t c h w")
                shifts = closest_shift(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1), R)  # ((b t) 2)
        shifts = shifts.reshape(-1, 2)  # ((b t) 2)
        logits = rearrange(self.motion_head(vectors), "b t (k n) -> (b t) k n", k=2).float()  # k: dx, dy
        target = shifts.to(logits.device) + R
        loss = 2 * F.cross_entropy(logits.flatten(0, 1), target.flatten())
        return loss, (logits.argmax(-1) == target).float().mean().detach()

    def _check(self, video: torch.Tensor) -> None:
        expected = f"(b, {self.inp_channels}, t, {self.inp_shape[0]}, {self.inp_shape[1]})"
        if video.dim() != 5 or video.shape[1] != self.inp_channels or tuple(video.shape[3:]) != self.inp_shape:
            raise ValueError(f"expected a video {expected}, got shape {tuple(video.shape)}")
        if not 2 <= video.shape[2] <= self.max_frames:
            raise ValueError(f"the LAM needs 2..{self.max_frames} frames (max_frames), got {video.shape[2]}")

    # --- checkpoints ---
    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> LatentAction:
        """Rebuild a trained LAM from a `genie.py fit` checkpoint alone."""
        from genie.checkpoints import load_network

        return load_network(cls, path, "lam", map_location)
