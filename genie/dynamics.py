"""Genie's dynamics model (Sec. 2.1, Fig. 6): MaskGIT over an ST-transformer.

Shape legend: b batch, t frames (T of them), h w token grid, s = h * w, e model width
(embed_dim), V = tok_vocab (the tokenizer's codebook size), K = act_vocab (latent actions).

    tokens (b T h w) --embed + space/time positions + action embedding--> (b T s e)
        --ST blocks (spatial attn, causal temporal attn, MLP)--> logits (b T s V)

Training (`compute_loss`): a random fraction U(0.5, 1) of the tokens of frames 1.. is replaced
by the mask id V; cross-entropy against the *original* tokens at the masked positions
(the mask id is input only: using the masked input as target drives the loss to 0 and learns
nothing).

Actions: `act_id[:, t]` leads from frame t to t+1 (the recorded CoinRun actions and the
LAM's actions mean the same), so the embedding added to frame t+1 is that of `act_id[:, t]`
and frame 0 gets a learned "no action" embedding. `frame_actions` is the one place this
alignment is written. Actions arrive as integer ids, so no gradient flows from the dynamics
loss into the LAM (Genie's stop-gradient on the latent actions).

Sampling (`generate`, `step`, `compile_rounds`) is `genie.generation.FrameSampler`'s: MaskGIT
decoding of one frame at a time over cached keys/values of the past frames. Training and
sampling share the network's one way from tokens to logits: `_embed` -> `_trunk` -> `_head`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genie import maskgit
from genie.attention import SpaceTimeBlock, TimeKV, space_angles
from genie.blueprint import Blueprint, BlueprintError, Stack
from genie.digits import DigitEmbedding, DigitHead, digit_table
from genie.generation import FrameSampler, Step  # noqa: F401 (Step: part of this module's API)
from genie.shift_head import SHIFT_GRID, ShiftPredictor  # noqa: F401 (SHIFT_GRID: part of this module's API)

# The README's Python example: 4 ST blocks of width 256.
DYNAMICS_DESC: Blueprint = (("space-time_attn", {"n_rep": 4, "n_embd": 256, "n_head": 4, "d_head": 16}),)


class DynamicsLosses(NamedTuple):
    loss: torch.Tensor  # mean cross-entropy over masked tokens (+ the scroll's, with `scroll`)
    accuracy: torch.Tensor  # fraction of masked tokens whose argmax is right
    mask: torch.Tensor  # (b T s) which tokens were masked
    shift_loss: torch.Tensor | None = None  # with `scroll`: cross-entropy of the predicted shifts
    shift_accuracy: torch.Tensor | None = None  # with `scroll`: share of shifts (dx and dy) right


class DynamicsModel(FrameSampler, ShiftPredictor, nn.Module):
    """MaskGIT dynamics model; keyword arguments as in the README's Python API.

    `tok_vocab`, `act_vocab` and `max_frames` come first so that training can build the model
    once it knows them from the tokenizer checkpoint and the LAM (`genie.lit.genie`): a preset
    states none of them.

    Args:
        tok_vocab: V, the tokenizer's codebook size.
        act_vocab: K, the number of latent actions.
        max_frames: longest sequence, generated frames included (learned time positions).
        desc: blueprint of `space-time_attn` blocks of width `embed_dim`.
        embed_dim: model width.
        max_side: largest token-grid side (learned row and column positions).
        mask_rate: range of the training mask rate (Genie: 0.5 to 1).
        mask_per_frame: draw the mask rate per frame instead of per clip
            (`genie.maskgit.training_mask`).
        action_every_block: also add a per-block action embedding to the residual stream before
            every block (zero at the start), not only to the input: the action reaches each block
            directly instead of being diluted through the ones before it.
        action_token: also give each frame the action as a token of its own, in front of the
            frame's tokens, which spatial attention reads like any other (Jasmine found the
            action as a prepended token essential on CoinRun); its output goes to no head.
        copy_gate: add to the logit of the token at the same place in the previous frame a
            bias that the model computes per token (a pointer to the past, as in pointer-generator
            networks, See et al. 2017). Most tokens of the next frame equal the previous frame's,
            so copying becomes the default and the blocks spend themselves on what changes.
        changed_weight: weight in the loss of the masked tokens that differ from the token at the
            same place one frame earlier (the others weigh 1; frame 0 has no earlier frame). Most
            tokens repeat the previous frame, so the plain loss is mostly about copying, and
            where the next frame is uncertain (an action whose effect depends on momentum) the
            most likely token of each place is the copy: greedy sampling then renders no motion.
            A weight w > 1 moves that decision toward change, as class weights do for a rare class.
        factorized: embed each token as the sum of its quantizer digits' embeddings and predict
            it with one softmax per digit (`genie.digits`) instead of one embedding and one
            softmax per code: a patch shifted by part of a token takes a code near the old one
            in most digits, which a V-way softmax treats as unrelated. Needs `token_levels`.
        space_rope: rotary positions (2D RoPE) in every block's spatial attention, on top of the
            learned absolute ones (`genie.attention.space_angles`): a score depends on two tokens'
            offset, so shifting the scene by a token is one rule for the whole grid.
        expected_weight: weight of a second loss term, the squared distance (in quantizer steps,
            summed over the digits) between each masked token's expected digits under the
            predicted distribution and its true digits. Cross-entropy scores a code one step off
            as wrong as any other; this term scores how far the distribution's mean is, which is
            what rendering the expected codes shows (`generate_expected`): a patch moved by part
            of a token lies between codes. Needs `token_levels`.
        token_levels: the tokenizer's quantizer levels (FSQ's `levels`; `[2] * bits` for LFQ),
            whose mixed-radix digits the token ids are; set by training from the tokenizer
            checkpoint, as `tok_vocab` is, and used with `factorized` and `expected_weight`.
        context_noise: in training, each frame's unmasked tokens (the context the model reads) are
            replaced by random codes with a probability drawn per frame from U(0, context_noise);
            the targets stay the true tokens. A rollout reads the model's own frames, which hold
            wrong tokens that clean training context never shows, so errors compound; GameNGen
            (Valevski et al. 2024, Sec. 3.2.1) noises the context frames in training for this.
        self_context: in training, the probability that a clip's context is the model's own
            guesses instead of the true tokens (scheduled sampling, Bengio et al. 2015): a first
            pass without gradient masks the clip as training does and fills the masked tokens
            with its greedy guesses (one MaskGIT round from the true past); the loss pass reads
            that filled clip, true tokens where the first pass kept them, and still scores
            against the true tokens. Unlike `context_noise`'s random codes, these are the errors
            a rollout feeds back (mostly copies of the frame before). Costs a forward pass over
            the chosen clips.
        scroll: largest scene shift R in pixels (0: off). With R > 0 the model first predicts the
            whole-pixel shift (dx, dy), each in -R..R, from the frame before, the action and the
            shift that led to that frame (momentum), with a small head of its own; the previous
            frame moved by that shift and tokenized again (`genie.scroll`) is then added to the new
            frame's input, and the copy gate (if on) points at it instead of the unmoved frame.
            Training moves each frame by its true shift and also scores the predicted shifts.
            Needs the tokenizer at hand (`attach`): it moves pixels, not tokens.
        shift_pick: with `scroll`, the shift a greedy (temperature 0) rollout takes: `mean`, the
            predicted distribution's mean rounded (a held moving action keeps moving even where
            "no shift" is its single most likely value), or `mode`, the most likely shift (the
            closer frame when the head is right, and a still frame when it hesitates).
        shift_view: with `scroll`, what the shift head sees of the frame before: `mean`, its mean
            token embedding (which codes are in it, not where), or `grid`, its token embeddings
            averaged over a `SHIFT_GRID` x `SHIFT_GRID` grid of regions (where they are: CoinRun's
            camera follows the agent, so the ground under it and a wall beside it, which stop a
            fall or a run, sit at fixed places in the frame).
    """

    def __init__(
        self,
        tok_vocab: int,
        act_vocab: int,
        max_frames: int = 32,
        desc: Blueprint = DYNAMICS_DESC,
        embed_dim: int = 256,
        max_side: int = 64,
        mask_rate: tuple[float, float] = (0.5, 1.0),
        mask_per_frame: bool = False,
        action_every_block: bool = False,
        copy_gate: bool = False,
        action_token: bool = False,
        changed_weight: float = 1.0,
        factorized: bool = False,
        token_levels: Sequence[int] | None = None,
        space_rope: bool = False,
        expected_weight: float = 0.0,
        context_noise: float = 0.0,
        self_context: float = 0.0,
        scroll: int = 0,
        shift_pick: Literal["mean", "mode"] = "mean",
        shift_view: Literal["mean", "grid"] = "mean",
    ):
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.tok_vocab, self.act_vocab, self.max_frames, self.max_side = tok_vocab, act_vocab, max_frames, max_side
        self.mask_id, self.no_action = tok_vocab, act_vocab
        self.mask_rate, self.mask_per_frame = tuple(mask_rate), mask_per_frame
        if changed_weight <= 0:
            raise ValueError(f"changed_weight must be positive, got {changed_weight}")
        self.changed_weight = changed_weight
        if expected_weight < 0:
            raise ValueError(f"expected_weight must be >= 0, got {expected_weight}")
        self.expected_weight = expected_weight
        if not 0 <= context_noise <= 1:
            raise ValueError(f"context_noise is a largest replacement rate in [0, 1], got {context_noise}")
        self.context_noise = context_noise
        if not 0 <= self_context <= 1:
            raise ValueError(f"self_context is a probability per clip in [0, 1], got {self_context}")
        self.self_context = self_context
        for option, used in (("factorized", factorized), ("expected_weight", expected_weight)):
            if used and (token_levels is None or math.prod(token_levels) != tok_vocab):
                raise ValueError(f"{option} needs the tokenizer's quantizer levels (token_levels) whose product is "
                                 f"tok_vocab={tok_vocab}, got {token_levels}")  # fmt: skip
        if expected_weight:
            self.register_buffer("digits", digit_table(token_levels).float(), persistent=False)  # (V D)
        if factorized:
            self.tok_embed: nn.Module = DigitEmbedding(token_levels, embed_dim)  # the mask id included
        else:
            self.tok_embed = nn.Embedding(tok_vocab + 1, embed_dim)  # + the mask id
        self.act_embed = nn.Embedding(act_vocab + 1, embed_dim)  # + "no action" for frame 0
        self.pos_time = nn.Parameter(torch.randn(max_frames, embed_dim) * 0.02)
        self.pos_row = nn.Parameter(torch.randn(max_side, embed_dim) * 0.02)
        self.pos_col = nn.Parameter(torch.randn(max_side, embed_dim) * 0.02)
        stack = Stack(desc, "desc")
        if not all(isinstance(layer, SpaceTimeBlock) and not layer.has_ext for layer in stack.layers):
            raise BlueprintError("desc: the dynamics model takes only unconditioned 'space-time_attn' blocks")
        if stack.in_channels != embed_dim:
            raise BlueprintError(f"desc: blocks of width {stack.in_channels}, but embed_dim={embed_dim}")
        self.blocks = stack.layers
        self.rope_dim = None
        if space_rope:
            d_heads = {block.space.d_head for block in self.blocks}
            if len(d_heads) != 1:
                raise BlueprintError(f"desc: space_rope needs one d_head for every block, got {sorted(d_heads)}")
            self.rope_dim = d_heads.pop()
            space_angles(1, 1, self.rope_dim)  # d_head divisible by 4, or a clear error now
        self.act_blocks = None
        if action_every_block:
            self.act_blocks = nn.Parameter(torch.zeros(len(self.blocks), act_vocab + 1, embed_dim))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = DigitHead(embed_dim, token_levels) if factorized else nn.Linear(embed_dim, tok_vocab)
        self.action_slots = int(action_token)  # tokens in front of each frame's h*w: the action's
        self.act_token = nn.Embedding(act_vocab + 1, embed_dim) if action_token else None
        self.copy_gate = None
        if copy_gate:
            self.copy_gate = nn.Linear(embed_dim, 1)
            # constant at the start, and large enough that with an untrained head (about uniform
            # over V codes) the copy already takes half the probability: log(V)
            nn.init.zeros_(self.copy_gate.weight)
            nn.init.constant_(self.copy_gate.bias, math.log(tok_vocab))
        self._build_shift_head(scroll, act_vocab, embed_dim, shift_pick, shift_view)
        self._compiled_round = None  # set by compile_rounds

    # --- the one place actions meet frames ---
    def frame_actions(self, act_id: torch.Tensor, t: int) -> torch.Tensor:
        """Action ids added to frames 0..t-1: `[no action, act_id[:, 0], ..., act_id[:, t-2]]`, `(b t)`.

        `act_id[:, k]` leads from frame k to k+1; columns beyond t-2 are not needed.
        """
        if act_id.dim() != 2 or act_id.shape[1] < t - 1:
            raise ValueError(f"need act_id of shape (b, >= {t - 1}) for {t} frames, got {tuple(act_id.shape)}")
        start = torch.full_like(act_id[:, :1], self.no_action)
        return torch.cat([start, act_id[:, : t - 1]], dim=1)

    def _embed(
        self, tokens: torch.Tensor, actions: torch.Tensor, t0: int = 0, moved: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tokens `(b t h w)` (frames t0..t0+t-1) and their aligned action ids `(b t)` -> `(b t a+s e)`
        (a = `action_slots` action tokens in front of the s frame tokens); with `scroll`, `moved
        (b t h w)` is each frame's predecessor moved by the shift into it (`genie.scroll`)."""
        _, t, h, w = tokens.shape
        x = rearrange(self.tok_embed(tokens), "b t h w e -> b t (h w) e")
        extra = self._moved(moved)
        if extra is not None:
            x = x + extra
        return self._open_slots(x) + self._placement(actions, t0, h, w)

    def _open_slots(self, x: torch.Tensor) -> torch.Tensor:
        """Token embeddings `(b t s e)` with zeros in front for the action tokens, `(b t a+s e)`:
        the placement then fills those in."""
        if not self.action_slots:
            return x
        return torch.cat([x.new_zeros(*x.shape[:2], self.action_slots, x.shape[-1]), x], dim=2)

    def _frame_part(self, x: torch.Tensor) -> torch.Tensor:
        """Features `(b t a+s e)` (or `(b a+s e)`) without the action tokens: what the head reads."""
        return x[..., self.action_slots :, :]

    def _placement(self, actions: torch.Tensor, t0: int, h: int, w: int) -> torch.Tensor:
        """What is added to every token embedding besides its id: space and time positions and
        the frame's action, `(b t a+s e)` for frames t0.. with `actions (b t)`; the action tokens
        are their embedding and the time position."""
        t = actions.shape[1]
        if t0 + t > self.max_frames or h > self.max_side or w > self.max_side:
            raise ValueError(
                f"{t0 + t} frames of {h}x{w} tokens exceed max_frames={self.max_frames} / max_side={self.max_side}"
            )
        pos_space = rearrange(self.pos_row[:h, None] + self.pos_col[None, :w], "h w e -> (h w) e")
        when = self.pos_time[t0 : t0 + t, None]  # (t 1 e)
        frame = pos_space + when + self.act_embed(actions)[:, :, None]  # (b t s e)
        if self.act_token is None:
            return frame
        return torch.cat([self.act_token(actions)[:, :, None] + when, frame], dim=2)

    def _angles(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        """Rotary angles of the spatial attention for a frame of `h x w` tokens after the action
        tokens, `(a+s d_head/2)`; None without `space_rope`."""
        if self.rope_dim is None:
            return None
        return space_angles(h, w, self.rope_dim, self.action_slots, device=device)

    def _block_actions(self, actions: torch.Tensor) -> torch.Tensor | None:
        """What `action_every_block` adds before each block, `(n b t 1 e)` for action ids `(b t)`
        (n blocks); None without it."""
        if self.act_blocks is None:
            return None
        return rearrange(self.act_blocks[:, actions], "n b t e -> n b t 1 e")

    def _trunk(
        self, x: torch.Tensor, actions: torch.Tensor, past: list[TimeKV] | None = None,
        angles: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[TimeKV]]:  # fmt: skip
        """ST blocks over `(b t s e)` with the frames' action ids `(b t)`, before the head; with
        `past`, `x` holds the frames after the cached ones; `angles`: `_angles` of the frames' grid.
        Returns the features and the cache."""
        cache, per_block = [], self._block_actions(actions)
        for i, block in enumerate(self.blocks):
            if per_block is not None:
                x = x + per_block[i]
            x, kv = block.forward_tokens(x, past=None if past is None else past[i], angles=angles)
            cache.append(kv)
        return x, cache

    def logits(
        self, tokens: torch.Tensor, act_id: torch.Tensor, reference: torch.Tensor | None = None,
        moved: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Logits `(b T s V)` for every token of `tokens (b T h w)` (mask id allowed).

        `reference (b T h w)`: the unmasked frames, whose frame t-1 the copy gate points at for
        frame t (default: `tokens`, right when their past frames are whole, as in sampling).
        `moved (b T h w)`, with `scroll`: each frame's predecessor moved by the shift into it
        (default: by the true shifts between the frames of `reference`, `Scroller.teacher`).
        """
        x, previous, has_previous = self._features(tokens, act_id, reference, moved)
        return self._head(x, previous, has_previous)

    def _features(
        self, tokens: torch.Tensor, act_id: torch.Tensor, reference: torch.Tensor | None = None,
        moved: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:  # fmt: skip
        """What the head reads for `tokens (b T h w)`: features `(b T s e)` and, for the copy gate,
        the token each place points at, the previous frame's (with `scroll`: the moved previous
        frame's) `(b T s)`, and whether there is one `(b T s 1)`."""
        self._check_tokens(tokens)
        ref = tokens if reference is None else reference
        if self.scroll and moved is None:
            moved = self.scroller.teacher(ref).moved
        actions = self.frame_actions(act_id, tokens.shape[1])
        angles = self._angles(*tokens.shape[-2:], tokens.device)
        x = self._frame_part(self._trunk(self._embed(tokens, actions, moved=moved), actions, angles=angles)[0])
        b, t, s, _ = x.shape
        has_previous = (torch.arange(t, device=x.device) > 0)[None, :, None, None].expand(b, t, s, 1)
        if self.copy_gate is None:
            return x, None, has_previous
        if moved is not None:  # frame t points at frame t-1 moved by the shift into t
            return x, rearrange(moved, "b t h w -> b t (h w)"), has_previous
        ref = rearrange(ref, "b t h w -> b t (h w)")
        previous = torch.cat([ref[:, :1], ref[:, :-1]], dim=1)  # frame 0 has none: its gate is zeroed
        return x, previous, has_previous

    def _head(
        self, x: torch.Tensor, previous: torch.Tensor | None = None, has_previous: torch.Tensor | bool = True
    ) -> torch.Tensor:
        """Logits `(... V)` from features `(... e)`; with the copy gate, plus its bias on the
        logit of `previous (...)`, the token at the same place one frame earlier."""
        x = self.norm(x)
        logits = self.head(x)
        if self.copy_gate is None or previous is None:
            return logits
        gate = self.copy_gate(x).to(logits.dtype) * has_previous  # (... 1)
        return logits.scatter_add(-1, previous[..., None], gate)

    # --- training ---
    def compute_loss(self, tokens: torch.Tensor, act_id: torch.Tensor) -> torch.Tensor:
        """MaskGIT loss of a clip: `loss = dynamics.compute_loss(tokens (b T h w), act_id (b T))`."""
        return self.compute_losses(tokens, act_id).loss

    def compute_losses(
        self, tokens: torch.Tensor, act_id: torch.Tensor, video: torch.Tensor | None = None,
        shifts: torch.Tensor | None = None,
    ) -> DynamicsLosses:  # fmt: skip
        """The loss and its parts; with `scroll`, `video (b c T H W)` in [-1, 1] are the clip's real
        frames, which the moved frames are made of (`Scroller.teacher`; default: the decoded tokens),
        and `shifts (b T-1 2)` their shifts if already measured (`Scroller.shifts`)."""
        self._check_tokens(tokens)
        b, t, h, w = tokens.shape
        mask = maskgit.training_mask(b, t, h * w, self.mask_rate, device=tokens.device, per_frame=self.mask_per_frame)
        flat = rearrange(tokens, "b t h w -> b t (h w)")
        scrolled = None
        if self.scroll:
            frames = None if video is None else rearrange(video, "b c t h w -> b t c h w")
            scrolled = self.scroller.teacher(tokens, frames, shifts)
        moved = None if scrolled is None else scrolled.moved
        context = flat
        if self.self_context and self.training:
            context = self._own_guesses(flat, act_id, h, moved)
        if self.context_noise:
            rate = self.context_noise * torch.rand(b, t, 1, device=tokens.device)  # per frame
            noised = (torch.rand(flat.shape, device=tokens.device) < rate) & ~mask
            context = torch.where(noised, torch.randint_like(flat, self.tok_vocab), context)  # on top of self_context's
        logits = self._masked_logits(context, mask, act_id, h, moved).float()  # (n V)
        target = flat[mask]  # (n)
        count = mask.sum().clamp(min=1)
        weight = None
        if self.changed_weight == 1.0:
            loss = F.cross_entropy(logits, target, reduction="sum") / count
        else:  # a weighted mean: the weights move the decision, not the loss's scale
            earlier = torch.cat([flat[:, :1], flat[:, :-1]], dim=1)  # frame 0 against itself: unchanged
            weight = torch.where(flat != earlier, self.changed_weight, 1.0)[mask]  # (n)
            loss = (F.cross_entropy(logits, target, reduction="none") * weight).sum() / weight.sum().clamp(min=1)
        if self.expected_weight:
            mean = logits.softmax(-1) @ self.digits  # (n D) expected digits
            error = (mean - self.digits[target]).square().sum(-1)  # (n)
            error = error.sum() / count if weight is None else (error * weight).sum() / weight.sum().clamp(min=1)
            loss = loss + self.expected_weight * error
        accuracy = (logits.argmax(-1) == target).float().sum() / count
        if scrolled is None:
            return DynamicsLosses(loss, accuracy.detach(), mask)
        shift_loss, shift_accuracy = self._shift_losses(tokens, act_id, scrolled.shifts)
        return DynamicsLosses(loss + shift_loss, accuracy.detach(), mask, shift_loss.detach(), shift_accuracy)

    def _masked_logits(
        self, context: torch.Tensor, mask: torch.Tensor, act_id: torch.Tensor, h: int,
        moved: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Logits `(n V)` of the n masked places of `context (b T s)` under `mask (b T s)`. The head
        (V logits per token) runs only there: the rest of the grid's logits would be thrown away.
        `moved (b T h w)`: with `scroll`, each frame's moved predecessor."""
        inputs = rearrange(torch.where(mask, self.mask_id, context), "b t (h w) -> b t h w", h=h)
        reference = rearrange(context, "b t (h w) -> b t h w", h=h)  # what the copy gate points at
        x, previous, has_previous = self._features(inputs, act_id, reference=reference, moved=moved)
        return self._head(x[mask], None if previous is None else previous[mask], has_previous[mask])

    @torch.no_grad()
    def _own_guesses(
        self, flat: torch.Tensor, act_id: torch.Tensor, h: int, moved: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`self_context`'s first pass: tokens `(b T s)` with, in a `self_context` share of the
        clips, the tokens under a fresh training mask replaced by the model's greedy guesses.
        Only the chosen clips run through the model."""
        chosen = torch.rand(flat.shape[0], device=flat.device) < self.self_context  # (b) whole clips
        if not chosen.any():
            return flat
        picked = flat[chosen]  # (c T s)
        c, t, s = picked.shape
        mask = maskgit.training_mask(c, t, s, self.mask_rate, device=flat.device, per_frame=self.mask_per_frame)
        guesses = picked.clone()
        moved = None if moved is None else moved[chosen]
        guesses[mask] = self._masked_logits(picked, mask, act_id[chosen], h, moved).argmax(-1)
        context = flat.clone()
        context[chosen] = guesses
        return context

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 4 or tokens.is_floating_point():
            raise ValueError(f"expected integer tokens (b, t, h, w), got {tokens.dtype} {tuple(tokens.shape)}")

    # --- checkpoints ---
    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> DynamicsModel:
        """Rebuild a trained dynamics model from a `genie.py fit` checkpoint alone."""
        from genie.checkpoints import load_network

        return load_network(cls, path, "dynamics", map_location)
