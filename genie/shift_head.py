"""The dynamics model's shift head (`scroll`): how far the scene moves before the tokens are drawn.

Shape legend: b batch, t/T frames, h w token grid, s = h * w, e model width, R = `scroll` (the
largest shift in pixels), n = 2R + 1 shift classes per axis.

With `scroll`, a frame is predicted in two moves (`genie.scroll`): a small head of its own reads the
frame before (its mean token, or a `SHIFT_GRID` x `SHIFT_GRID` grid of region means), the action and
the shift that led to that frame (CoinRun has momentum), and predicts the whole-pixel shift (dx, dy)
of the scene; the frame before, moved by it and tokenized again, is then added to the new frame's
tokens (`_moved`) and is what the copy gate points at. Training moves each frame by its true shift
(`Scroller.teacher`) and scores the predicted shifts (`_shift_losses`).

`ShiftPredictor` is that part of `genie.dynamics.DynamicsModel` (which provides `tok_embed`); its
modules are the model's own attributes, so checkpoints keep their keys.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genie.scroll import Scroller
from genie.tokenizer import VideoTokenizer

SHIFT_GRID = 4  # `shift_view="grid"`: regions per side of the frame the shift head reads


class ShiftPredictor:
    """`scroll`'s shift head and moved-frame embedding, on a dynamics model (see the module docstring)."""

    def _build_shift_head(
        self, scroll: int, act_vocab: int, embed_dim: int, shift_pick: Literal["mean", "mode"],
        shift_view: Literal["mean", "grid"],
    ) -> None:  # fmt: skip
        """The shift head's modules (none with `scroll=0`), after checking its options."""
        if scroll < 0:
            raise ValueError(f"scroll is a largest shift in pixels (0: off), got {scroll}")
        self.scroll, self._scroller = scroll, None
        if shift_pick not in ("mean", "mode"):
            raise ValueError(f"shift_pick must be 'mean' or 'mode', got {shift_pick!r}")
        self.shift_pick = shift_pick
        if shift_view not in ("mean", "grid"):
            raise ValueError(f"shift_view must be 'mean' or 'grid', got {shift_view!r}")
        self.shift_grid = None
        if scroll:
            n = 2 * scroll + 1  # shifts -R..R per axis; class n: the shift before is unknown
            self.shift_act = nn.Embedding(act_vocab + 1, embed_dim)
            self.shift_before = nn.Embedding(2 * (n + 1), embed_dim)  # dx's classes, then dy's
            if shift_view == "grid":
                self.shift_grid = nn.Sequential(nn.LayerNorm(SHIFT_GRID**2 * embed_dim),
                                                nn.Linear(SHIFT_GRID**2 * embed_dim, embed_dim))  # fmt: skip
            self.shift_head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, 2 * embed_dim), nn.GELU(),
                                            nn.Linear(2 * embed_dim, 2 * n))  # fmt: skip
            self.moved_embed = nn.Linear(embed_dim, embed_dim)
            nn.init.zeros_(self.moved_embed.weight)  # starts as the model without the moved frame
            nn.init.zeros_(self.moved_embed.bias)

    def attach(self, tokenizer: VideoTokenizer) -> ShiftPredictor:
        """Give a `scroll` model the frozen tokenizer it moves frames with (not part of its weights)."""
        if self.scroll:
            self._scroller = Scroller(tokenizer, self.scroll)
        return self

    @property
    def scroller(self) -> Scroller:
        if self._scroller is None:
            raise RuntimeError("this dynamics model predicts the scene's scroll and needs the tokenizer it was "
                               "trained with: call dynamics.attach(tokenizer) first")  # fmt: skip
        return self._scroller

    def shift_logits(
        self, frame: torch.Tensor, act: torch.Tensor, before: torch.Tensor | None, known: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits `(... 2 2R+1)` of the shift (dx, dy) from `frame (... h w)` to the next one under
        action ids `act (...)`, given the shift that led to `frame`, `before (... 2)` in pixels,
        where `known (...)` (default: everywhere; None `before`: nowhere, as at a rollout's first frame)."""
        n = 2 * self.scroll + 1
        index = act.new_full((*act.shape, 2), n)  # unknown
        if before is not None:
            known = torch.ones_like(act, dtype=torch.bool) if known is None else known
            index = torch.where(known[..., None], before.long() + self.scroll, index)
        index = index + torch.tensor([0, n + 1], device=act.device)  # dy's classes after dx's
        embedded = self.tok_embed(frame)  # (... h w e)
        if self.shift_grid is None:
            summary = embedded.flatten(-3, -2).mean(-2)  # (... e) the frame's mean token
        else:
            lead = embedded.shape[:-3]
            grid = rearrange(embedded.flatten(0, -4), "n h w e -> n e h w")
            grid = F.adaptive_avg_pool2d(grid, SHIFT_GRID)  # (n e g g) each region's mean token
            summary = self.shift_grid(rearrange(grid, "n e g k -> n (g k e)")).reshape(*lead, -1)  # (... e)
        x = summary + self.shift_act(act) + self.shift_before(index).sum(-2)
        return rearrange(self.shift_head(x), "... (k n) -> ... k n", k=2)

    def _moved(self, moved: torch.Tensor | None) -> torch.Tensor | None:
        """What the moved previous frame `(b t h w)` adds to each token, `(b t s e)`; None without scroll."""
        if not self.scroll or moved is None:
            return None
        return rearrange(self.moved_embed(self.tok_embed(moved)), "b t h w e -> b t (h w) e")

    def _shift_losses(
        self, tokens: torch.Tensor, act_id: torch.Tensor, shifts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy of the shift predicted for every step of a clip `(b T h w)`
        against the true `shifts (b T-1 2)`; the shift before frame 0 is unknown."""
        b, t = tokens.shape[:2]
        before = torch.cat([torch.zeros_like(shifts[:, :1]), shifts[:, :-1]], dim=1)  # (b T-1 2)
        known = (torch.arange(t - 1, device=shifts.device) > 0).expand(b, -1)  # none before frame 0
        logits = self.shift_logits(tokens[:, :-1], act_id[:, : t - 1], before, known).float()  # (b T-1 2 n)
        target = shifts + self.scroll  # (b T-1 2) classes 0..2R
        loss = F.cross_entropy(rearrange(logits, "b t k n -> (b t k) n"), target.flatten())
        return loss, (logits.argmax(-1) == target).float().mean().detach()
