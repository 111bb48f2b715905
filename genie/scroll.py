"""The scene's scroll, in tokens: what `DynamicsModel(scroll=R)` reads besides the past tokens.

Shape legend: b batch, T frames, h w token grid, c H W pixels.

CoinRun's camera follows the agent, so most of what an action does to the next frame is one
whole-frame shift. A token grid cannot show it by moving tokens: a shift by part of a patch
gives most patches a new code, which the dynamics model would have to guess one token at a time.
Moving the *pixels* and tokenizing again does show it: the tokens of the previous frame moved
by the right whole-pixel shift are 1.8 dB closer to the next frame than the unmoved ones on
unseen CoinRun levels at frame skip 8 (`scripts/shift_oracle.py`, through the bundled
tokenizer). Motion-compensated prediction, as in video codecs: the dynamics model predicts the
shift from the action and then only has to render what the shift does not explain.

`Scroller` does the pixel work with the frozen tokenizer: the shift between consecutive frames
(the training target and the model's memory of how it was moving) and the previous frame's
tokens moved by a shift.

Where the frame did not move, its moved tokens are its own tokens, exactly. Tokenizing a decoded
frame again does not give back its tokens (on a CoinRun frame moved by 3 px, the re-tokenized
decoded frame agrees with the tokens of the real moved frame at 31 % of the places), so a model
trained on decoded-and-retokenized frames learns that the unmoved previous frame is the better
guide and ignores the moved one: measured, a model trained so renders no shift even when forced
to. Training therefore moves the real frames (`teacher(tokens, frames)`), and a rollout, which
has only its own tokens, decodes them to move them, except where the shift is zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange

from genie.motion import closest_shift, move
from genie.tokenizer import VideoTokenizer


class Scrolled(NamedTuple):
    shifts: torch.Tensor  # (b T-1 2) whole-pixel (dx, dy) from frame t to t+1
    moved: torch.Tensor  # (b T h w) frame t-1 moved by shift t-1 -> t, tokenized; frame 0: its own tokens


class Seen(NamedTuple):
    """What a rollout's scroll reads of its context frames, kept between steps so that each frame
    is decoded, and each shift between two frames measured, once."""

    frames: torch.Tensor  # (b T c H W) the decoded frames, in [-1, 1]
    shifts: torch.Tensor  # (b T-1 2) the shift from each frame to the next

    def drop(self, n: int) -> Seen:
        """Without the first `n` frames (the context window sliding)."""
        return Seen(self.frames[:, n:], self.shifts[:, n:])


def greedy_shift(logits: torch.Tensor, how: str) -> torch.Tensor:
    """The shift classes `(... 2)` a greedy pick takes from shift `logits (... 2 2R+1)`: `mean`, the
    distribution's mean class, rounded (a shift is a distance: when "no shift" is the single most
    likely value of an action that mostly moves, the mean still moves), or `mode`, the most likely
    class (the closer frame whenever the head is right). Subtract R for pixels."""
    if how == "mode":
        return logits.argmax(-1)
    if how != "mean":
        raise ValueError(f"a greedy shift pick is 'mean' or 'mode', got {how!r}")
    values = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32)
    return (logits.float().softmax(-1) @ values).round().long()


class Scroller:
    """Shifts between token frames and token frames moved by a shift, through the frozen `tokenizer`.

    Both work on the decoded frames (what a rollout has of its own frames), so training and
    generation read the same kind of input. Shifts are whole pixels within +-`max_shift`.
    """

    def __init__(self, tokenizer: VideoTokenizer, max_shift: int):
        self.tokenizer, self.max_shift = tokenizer, max_shift

    @torch.no_grad()
    def pixels(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token frames `(b T h w)` -> decoded frames `(b T c H W)`, each frame on its own (with a
        decoder that looks back in time too), so that a frame's pixels do not depend on which
        frames came before it and a rollout can decode each new frame once (`seen`, `extend`)."""
        b = tokens.shape[0]
        alone = rearrange(tokens, "b t h w -> (b t) 1 h w")
        video = self.tokenizer.decode(alone).float().clamp(-1, 1)  # (bT c 1 H W)
        return rearrange(video, "(b t) c 1 h w -> b t c h w", b=b)

    @torch.no_grad()
    def seen(self, tokens: torch.Tensor) -> Seen:
        """A rollout's context `(b T h w)` decoded and its shifts measured (`Seen`)."""
        frames = self.pixels(tokens)
        return Seen(frames, self.shifts(frames))

    @torch.no_grad()
    def extend(self, seen: Seen, new: torch.Tensor) -> Seen:
        """`seen` and one more frame `new (b 1 h w)`: decoded once, and its shift from the last."""
        frame = self.pixels(new)  # (b 1 c H W)
        shift = self.shifts(torch.cat([seen.frames[:, -1:], frame], dim=1))  # (b 1 2)
        return Seen(torch.cat([seen.frames, frame], dim=1), torch.cat([seen.shifts, shift], dim=1))

    @torch.no_grad()
    def shifts(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames `(b T c H W)` -> shift from each frame to the next `(b T-1 2)`."""
        b, t = frames.shape[:2]
        before, after = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
        return closest_shift(before, after, self.max_shift).reshape(b, t - 1, 2)

    @torch.no_grad()
    def move(self, frames: torch.Tensor, shifts: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Frames `(b c H W)` moved by `shifts (b 2)` and tokenized: `(b h w)`; where a shift is
        (0, 0), the frame's own `tokens (b h w)` if given."""
        video = rearrange(move(frames, shifts), "b c h w -> b c 1 h w")
        moved = self.tokenizer.tokenize(video).indices[:, 0]
        if tokens is None:
            return moved
        still = (shifts == 0).all(-1)[:, None, None]  # (b 1 1)
        return torch.where(still, tokens, moved)

    @torch.no_grad()
    def teacher(
        self, tokens: torch.Tensor, frames: torch.Tensor | None = None, shifts: torch.Tensor | None = None
    ) -> Scrolled:
        """For a clip `(b T h w)`: the true shifts and every frame's predecessor moved by its true
        shift (what training conditions each frame on), from the clip's real `frames (b T c H W)`
        in [-1, 1] if given (training), else from its decoded tokens (a rollout's own context).
        `shifts (b T-1 2)`: the frames' shifts if already measured (`shifts(frames)`)."""
        real = frames is not None
        frames = frames.float() if real else self.pixels(tokens)  # (b T c H W)
        shifts = self.shifts(frames) if shifts is None else shifts
        if tokens.shape[1] == 1:  # one frame: nothing moved into it
            return Scrolled(shifts, tokens)
        moved = self.move(frames[:, :-1].flatten(0, 1), shifts.flatten(0, 1), tokens[:, :-1].flatten(0, 1))
        moved = rearrange(moved, "(b t) h w -> b t h w", b=tokens.shape[0])
        return Scrolled(shifts, torch.cat([tokens[:, :1], moved], dim=1))
