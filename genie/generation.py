"""Sampling frames from a dynamics model: MaskGIT decoding of one frame at a time (Genie Sec. 2.1).

Shape legend: b batch, t/T frames, h w token grid, s = h * w, m masked positions, e model width,
V codebook size, d code dimensions (quantizer dimensions).

Causal temporal attention means the keys/values of past frames do not change while the new frame
is refined, so they are computed once (`TimeKV` cache) and each MaskGIT round runs one frame.
The blocks of a round see the cache with fixed shapes (`FixedKV`), so `compile_rounds` can
`torch.compile` them once for a whole rollout (with CUDA graphs on a GPU). Without the cache
(`use_cache=False`, for comparison), a round's logits are the training logits
(`DynamicsModel.logits`) of the past frames and the partly masked new one.

`FrameSampler` is the sampling half of `genie.dynamics.DynamicsModel`, which provides the
network: `frame_actions`, `logits`, `_embed`, `_open_slots`, `_placement`, `_frame_part`,
`_block_actions`, `_angles`, `_trunk`, `_head`, `tok_embed`, `blocks`, `mask_id`, `copy_gate`, and
with `scroll`, `genie.shift_head.ShiftPredictor`'s `scroller`, `shift_logits`, `_moved`.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import NamedTuple

import torch
import torch._dynamo.exc
import torch._inductor.exc
from einops import rearrange

from genie import maskgit
from genie.attention import FixedKV, TimeKV
from genie.scroll import Seen, greedy_shift

log = logging.getLogger(__name__)

# What a failing `torch.compile` raises (dynamo wraps inductor's errors; a missing or broken C++
# compiler surfaces as these). Any other exception in a round is a bug and propagates.
_COMPILER_FAILURES = (torch._dynamo.exc.TorchDynamoException, torch._inductor.exc.CppCompileError,
                      torch._inductor.exc.InvalidCxxCompiler, torch._inductor.exc.TritonMissing)  # fmt: skip


class Step(NamedTuple):
    tokens: torch.Tensor  # (b T+1 h w): the context and the new frame
    cache: list[TimeKV] | None  # temporal keys/values of those T+1 frames, for the next step
    expected: torch.Tensor | None = None  # (b d 1 h w): the new frame's expected codes, with `values`
    seen: Seen | None = None  # with `scroll`: the T+1 frames decoded and their shifts, for the next step


class Generated(NamedTuple):
    tokens: torch.Tensor  # (b T+n h w): the context and the n new frames
    expected: torch.Tensor | None  # (b d n h w): the new frames' expected codes (`maskgit.decode`'s `values`)


class FrameSampler:
    """`generate`, `step` and `compile_rounds` of a dynamics model (see the module docstring)."""

    _compiled_round = None  # set by compile_rounds

    @torch.no_grad()
    def generate(
        self,
        tokens: torch.Tensor,
        act_id: torch.Tensor,
        steps: int = maskgit.STEPS,
        temperature: float = 1.0,
        num_frames: int = 1,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append `num_frames` frames to `tokens (b T h w)`: returns `(b T+num_frames h w)`.

        New frame T+k is driven by `act_id[:, T-1+k]`, so `act_id` needs `T-1+num_frames`
        columns (`(b, T)` as the README's API passes it, for one frame). `temperature=0` decodes greedily.
        `use_cache=False` recomputes every past frame at every MaskGIT round (for comparison).
        """
        return self._generate(tokens, act_id, steps, temperature, num_frames, use_cache, generator, None).tokens

    @torch.no_grad()
    def generate_expected(
        self,
        tokens: torch.Tensor,
        act_id: torch.Tensor,
        values: torch.Tensor,
        steps: int = maskgit.STEPS,
        temperature: float = 1.0,
        num_frames: int = 1,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Generated:
        """`generate`, and for every new token its expected code under the distribution it was
        sampled from: `values (V d)` is the tokenizer's code of each id (`VideoTokenizer.code_table`).

        The tokens (what the next frames are predicted from) are those of `generate`; the expected
        codes are what a decoder can show instead: where the model is unsure whether a patch moved,
        the mean of the candidate codes rather than one of them (often the unmoved one).
        """
        return self._generate(tokens, act_id, steps, temperature, num_frames, use_cache, generator, values)

    def _generate(self, tokens, act_id, steps, temperature, num_frames, use_cache, generator, values) -> Generated:
        self._check_tokens(tokens)
        t = tokens.shape[1]
        self.frame_actions(act_id, t + num_frames)  # checks act_id covers every new frame
        cache, seen, expected = None, None, []
        for k in range(num_frames):
            more = use_cache and k + 1 < num_frames  # the last frame's keys/values are not needed
            step = self.step(tokens, act_id, cache, steps=steps, temperature=temperature, generator=generator,
                             use_cache=use_cache, extend_cache=more, room=num_frames, values=values, seen=seen)
            tokens, cache, seen = step.tokens, step.cache, step.seen
            expected.append(step.expected)
        return Generated(tokens, torch.cat(expected, dim=2) if values is not None and expected else None)

    @torch.no_grad()
    def step(
        self,
        tokens: torch.Tensor,
        act_id: torch.Tensor,
        cache: list[TimeKV] | None = None,
        steps: int = maskgit.STEPS,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        extend_cache: bool = True,
        room: int = 1,
        values: torch.Tensor | None = None,
        seen: Seen | None = None,
    ) -> Step:
        """One new frame after `tokens (b T h w)`, driven by `act_id[:, T-1]`.

        Returns the `T+1` frames and, for the next call, the keys/values of all of them. Pass
        `cache=None` the first time (or after changing `tokens` other than by this method):
        the context is then run once with `room` frames of space reserved for what follows.
        With `values (V d)`, also the new frame's expected codes (`generate_expected`).
        With `scroll`, `seen` is the `Step.seen` of the call before (None: decoded from `tokens`);
        sliced like `tokens` (`Seen.drop`) when the context is cut.
        """
        b, t, h, w = tokens.shape
        actions = self.frame_actions(act_id, t + 1)  # (b T+1)
        fixed, angles = None, self._angles(h, w, tokens.device)
        moved = None
        if self.scroll:
            seen = self.scroller.seen(tokens) if seen is None else seen
            if seen.frames.shape[1] != t:
                raise ValueError(f"seen holds {seen.frames.shape[1]} frames but tokens {t}: slice both alike")
            # the last frame moved by the shift the model predicts, (b 1 h w)
            moved = self._scrolled_frame(tokens, seen, actions[:, t], temperature, generator)
        if use_cache:
            if cache is None:
                done = actions[:, :t]
                # the context's own moved frames, from its measured shifts
                before = self.scroller.teacher(tokens, seen.frames, seen.shifts).moved if self.scroll else None
                x = self._embed(tokens, done, moved=before)
                cache = [kv.with_room(room) for kv in self._trunk(x, done, angles=angles)[1]]
            # what every MaskGIT round of this frame shares: computed once, not per round
            now = actions[:, t : t + 1]
            placement = self._placement(now, t, h, w)
            if moved is not None:
                placement = placement + self._open_slots(self._moved(moved))
            fixed = ([kv.fixed() for kv in cache], placement, self._block_actions(now), angles)
        logits_fn = partial(self._frame_logits, past=tokens, actions=actions, fixed=fixed, moved=moved)
        frame, expected = maskgit.decode(logits_fn, b, h * w, self.mask_id, steps=steps, temperature=temperature,
                                         device=tokens.device, generator=generator, values=values)  # fmt: skip
        new = rearrange(frame, "b (h w) -> b 1 h w", h=h)
        if expected is not None:
            expected = rearrange(expected, "b (h w) d -> b d 1 h w", h=h)
        more = use_cache and extend_cache
        if more:  # the finished frame's keys/values, once
            x = self._embed(new, actions[:, t : t + 1], t0=t, moved=moved)
            cache = self._trunk(x, actions[:, t : t + 1], cache, angles)[1]
        seen = self.scroller.extend(seen, new) if more and self.scroll else None
        return Step(torch.cat([tokens, new], dim=1), cache if more else None, expected, seen)

    def _frame_logits(
        self,
        frame: torch.Tensor,
        positions: torch.Tensor,
        *,
        past: torch.Tensor,
        actions: torch.Tensor,
        fixed: tuple[list[FixedKV], torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None,
        moved: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits `(b m V)` at `positions (b m)` of the frame `(b s)` that follows `past (b t h w)`.

        With `fixed` (the keys/values of `past` as `FixedKV`s, the new frame's placement, its
        per-block actions and its rotary angles), only the new frame runs through the blocks, and only the m requested
        positions go through the output head; without, these are the training logits.
        `moved (b 1 h w)`: with `scroll`, the last frame moved by the predicted shift (in `fixed`'s
        placement already; the copy gate points at it).
        """
        t, h = past.shape[1], past.shape[2]
        if fixed is None:  # the training logits of the past frames and this one
            new = rearrange(frame, "b (h w) -> b 1 h w", h=h)
            every = None if moved is None else torch.cat([self.scroller.teacher(past).moved, moved], dim=1)
            logits = self.logits(torch.cat([past, new], dim=1), actions[:, 1 : t + 1], moved=every)[:, -1]  # (b s V)
            return torch.gather(logits, 1, positions[..., None].expand(-1, -1, logits.shape[-1]))
        x = self._frame_part(self._round(frame, fixed[1], fixed[0], fixed[2], fixed[3]))  # (b s e)
        x = torch.gather(x, 1, positions[..., None].expand(-1, -1, x.shape[-1]))  # (b m e)
        if self.copy_gate is None:
            return self._head(x)
        pointed = past[:, -1] if moved is None else moved[:, 0]  # what the copy gate points at
        previous = torch.gather(rearrange(pointed, "b h w -> b (h w)"), 1, positions)  # (b m)
        return self._head(x, previous)

    def _scrolled_frame(
        self, tokens: torch.Tensor, seen: Seen, act: torch.Tensor, temperature: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:  # fmt: skip
        """`scroll`'s first move: the shift from the last frame of `tokens (b T h w)` (decoded and
        measured in `seen`) under action ids `act (b)`, predicted, and that frame moved by it,
        tokenized: `(b 1 h w)`.

        At temperature 0 the shift is, with `shift_pick="mean"` (the default), the predicted
        distribution's mean, rounded, not its most likely value: a shift is a distance, and under
        a random policy's data "stand still" is often the single most likely shift even for an
        action that mostly moves (CoinRun at 8 frames a step, LEFT from standing: no shift in half
        the steps, a mean of 4.9 px; `scripts/data_motion.py --whole 16`), so the most likely
        shift would freeze the scene. With `shift_pick="mode"` it is the most likely value, which
        is the closer frame whenever the head is right. Otherwise it is sampled like the tokens.
        """
        before = seen.shifts[:, -1] if seen.shifts.shape[1] else None  # the shift into the last frame, if any
        logits = self.shift_logits(tokens[:, -1], act, before).float()  # (b 2 n)
        if temperature == 0:
            pick = greedy_shift(logits, self.shift_pick)  # (b 2)
        else:
            pick = maskgit.sample_categorical((logits / temperature).softmax(-1), generator)
        return self.scroller.move(seen.frames[:, -1], pick - self.scroll, tokens[:, -1])[:, None]

    def _round(
        self, frame: torch.Tensor, placement: torch.Tensor, past: list[FixedKV], per_block: torch.Tensor | None,
        angles: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """`_round_eager`, compiled when `compile_rounds` was called and compiling works here."""
        if self._compiled_round is not None:
            try:
                return self._compiled_round(frame, placement, past, per_block, angles)
            except _COMPILER_FAILURES as e:  # e.g. no C++ compiler for inductor: the same round, uncompiled
                first = (str(e).strip().splitlines() or [""])[0][:200]
                log.warning("torch.compile of the MaskGIT round failed (%s: %s); running it uncompiled",
                            type(e).__name__, first)  # fmt: skip
                self._compiled_round = None
        return self._round_eager(frame, placement, past, per_block, angles)

    def _round_eager(
        self, frame: torch.Tensor, placement: torch.Tensor, past: list[FixedKV], per_block: torch.Tensor | None,
        angles: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Features `(b a+s e)` of a partly masked new frame `(b s)` (and its action tokens) over the cached past.

        This is all of a MaskGIT round but the head and the sampler (whose size changes as tokens
        are committed), and every shape in it is fixed for a whole rollout (`FixedKV`), which is
        what `compile_rounds` needs.
        """
        x = self._open_slots(rearrange(self.tok_embed(frame), "b s e -> b 1 s e")) + placement
        for i, (block, kv) in enumerate(zip(self.blocks, past)):
            if per_block is not None:
                x = x + per_block[i]
            x = block.forward_tokens(x, past=kv, angles=angles)[0]
        return x[:, 0]

    def compile_rounds(self, mode: str | None = None) -> FrameSampler:
        """`torch.compile` the part of a MaskGIT round that runs the blocks (`_round_eager`).

        Its shapes are fixed, so one graph serves every round and frame of a rollout (compiled
        on the first, in 5-20 s on a 2-core CPU). `mode="reduce-overhead"` adds CUDA graphs on
        a GPU: 25 rounds a frame are then not bound by kernel launches.
        """
        self._compiled_round = torch.compile(self._round_eager, mode=mode, dynamic=False, fullgraph=True)
        return self

    @property
    def compiled(self) -> bool:
        """Whether MaskGIT rounds run compiled (`compile_rounds` called and not fallen back)."""
        return self._compiled_round is not None
