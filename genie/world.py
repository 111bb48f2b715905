"""A playable learned world: one prompt image, then a latent action per step (Genie Sec. 2.2).

Shape legend: b batch (parallel worlds), c channels, H W pixels, T frames kept as context,
h w token grid.

    image (b c H W) --tokenizer--> tokens (b 1 h w)
    action a_t      --dynamics (MaskGIT, cached keys/values)--> tokens of frame t+1
                    --tokenizer decoder, streamed--> frame t+1 (b c H W)

Per frame the cost is the MaskGIT rounds of one frame (past frames come from the temporal
cache) and one frame of decoding (`FrameStream` keeps each causal conv's past), so a step
costs the same at frame 5 and at frame 500. A scroll model decodes each new frame once to
measure its shift (`genie.scroll.Seen`); with a per-frame decoder that is the frame shown.

Context window: the dynamics model has learned time positions for `max_frames` frames (the
clip length it was trained on), so at most that many frames are in context. When the next
frame would not fit, the context drops to its last `keep` frames and their cache is rebuilt
once; that rebuild is amortised over the next `max_frames - keep` frames.
"""

from __future__ import annotations

import torch
from einops import rearrange

from genie import maskgit
from genie.attention import TimeKV
from genie.blocks import FrameStream
from genie.checkpoints import (
    CheckpointError,
    load_network,
    read_checkpoint,
    require_frame_tokens,
    require_same_vocabulary,
)
from genie.dynamics import DynamicsModel
from genie.scroll import Seen
from genie.tokenizer import VideoTokenizer


class World:
    """Tokenizer + dynamics model as an environment: `reset(image)`, then `step(action)`.

    Args:
        tokenizer: the frozen video tokenizer the dynamics model was trained on.
        dynamics: the trained dynamics model.
        steps: MaskGIT rounds per frame (Genie: 25).
        temperature: sampling temperature (0: greedy).
        keep: frames kept when the context window is full (default: half of max_frames).
        generator: random generator of the sampling (for reproducible rollouts).
        frame_shape: (H, W) of the frames the models were trained on.
        compile: `torch.compile` the blocks of a MaskGIT round (`DynamicsModel.compile_rounds`),
            with CUDA graphs on a GPU; the first frame then takes 5-20 s longer on a CPU.
        action_source: what the actions are: `latent` (the LAM's, Genie) or `recorded` (a
            dynamics model trained on the game's own actions, e.g. CoinRun's 15 button combos).
        game_frames_per_step: how many game frames one generated frame stands for (the frame
            skip of the data it was trained on; recorded in its checkpoint).
        render: what the decoder shows of a new frame: `tokens` (its sampled tokens, Genie) or
            `expected` (each token's expected code under the distribution it was sampled from,
            `DynamicsModel.generate_expected`); the context stays the sampled tokens either way.
    """

    def __init__(
        self,
        tokenizer: VideoTokenizer,
        dynamics: DynamicsModel,
        steps: int = maskgit.STEPS,
        temperature: float = 1.0,
        keep: int | None = None,
        generator: torch.Generator | None = None,
        frame_shape: tuple[int, int] = (64, 64),
        compile: bool = False,
        action_source: str = "latent",
        game_frames_per_step: int = 1,
        render: str = "tokens",
    ):
        if dynamics.tok_vocab != tokenizer.codebook_size:
            raise CheckpointError(
                f"the dynamics model predicts {dynamics.tok_vocab} token ids but the tokenizer has "
                f"{tokenizer.codebook_size} codes: these checkpoints were not trained together"
            )
        require_frame_tokens(tokenizer.downsampling[0], "the tokenizer")
        self.tokenizer, self.dynamics = tokenizer.eval(), dynamics.eval().attach(tokenizer)
        if compile:
            dynamics.compile_rounds("reduce-overhead" if self.device.type == "cuda" else None)
        self.steps, self.temperature, self.generator = steps, temperature, generator
        if render not in ("tokens", "expected"):
            raise ValueError(f"render must be 'tokens' or 'expected', got {render!r}")
        self.values = tokenizer.code_table() if render == "expected" else None  # (V d), once
        self.action_source = action_source
        self.game_frames_per_step = game_frames_per_step
        self.frame_shape = tuple(frame_shape)  # (H, W) of the frames it was trained on
        self.window = dynamics.max_frames
        self.keep = max(1, min(keep or self.window // 2, self.window - 1))
        self.tokens: torch.Tensor | None = None  # (b T h w) the context
        self.actions: torch.Tensor | None = None  # (b T-1) actions between context frames
        self.cache: list[TimeKV] | None = None
        self.seen: Seen | None = None  # with a scroll model: the context decoded, and its shifts
        self.frames = 0  # frames so far, the prompt included

    @property
    def num_actions(self) -> int:
        return self.dynamics.act_vocab

    @property
    def device(self) -> torch.device:
        return self.dynamics.pos_time.device

    @torch.no_grad()
    def reset(self, image: torch.Tensor) -> torch.Tensor:
        """Start from `image (b c H W)` in [-1, 1]; returns its reconstruction `(b c H W)`."""
        if image.dim() != 4:
            raise ValueError(f"expected images (b, c, H, W), got shape {tuple(image.shape)}")
        video = rearrange(image.to(self.device, torch.float32), "b c h w -> b c 1 h w")
        self.tokens = self.tokenizer.tokenize(video).indices  # (b 1 h w)
        self.actions = self.tokens.new_zeros(self.tokens.shape[0], 0)
        self.cache, self.seen, self.frames = None, None, 1
        self._decoder = FrameStream(self.tokenizer.decoder)
        return self._decode(self.tokens)

    @torch.no_grad()
    def step(self, action: int | torch.Tensor) -> torch.Tensor:
        """Apply latent `action` (an int, or one per world `(b)`); returns the next frame `(b c H W)`."""
        if self.tokens is None:
            raise RuntimeError("call reset(image) before step(action)")
        b = self.tokens.shape[0]
        act = torch.as_tensor(action, device=self.device).long().reshape(-1).expand(b)
        if ((act < 0) | (act >= self.num_actions)).any():
            raise ValueError(f"latent actions are 0..{self.num_actions - 1}, got {act.tolist()}")
        if self.tokens.shape[1] + 1 > self.window:  # slide: keep the last `keep` frames, rebuild once
            drop = self.tokens.shape[1] - self.keep
            self.tokens, self.actions, self.cache = self.tokens[:, drop:], self.actions[:, drop:], None
            self.seen = None if self.seen is None else self.seen.drop(drop)
        self.actions = torch.cat([self.actions, act[:, None]], dim=1)  # (b T): the last leads to the new frame
        room = self.window - self.tokens.shape[1]
        out = self.dynamics.step(self.tokens, self.actions, self.cache, steps=self.steps, temperature=self.temperature,
                                 generator=self.generator, room=room, values=self.values, seen=self.seen)  # fmt: skip
        self.tokens, self.cache, self.seen = out.tokens, out.cache, out.seen
        self.frames += 1
        if out.expected is None and out.seen is not None and self._decoder.per_frame:
            # the scroll decoded it already (each frame alone: the same pixels); a copy, so that the
            # caller cannot change the context the next step reads
            return out.seen.frames[:, -1].clone()
        return self._decode(self.tokens[:, -1:] if out.expected is None else out.expected)

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token frames `(b 1 h w)` (or codes `(b d 1 h w)`) -> pixels `(b c H W)` in [-1, 1], through
        the decoder's stream."""
        return self.tokenizer.decode(tokens, self._decoder)[:, :, -1].float().clamp(-1, 1)


def load_world(
    checkpoint: str,
    tokenizer_checkpoint: str,
    device: str | torch.device = "cpu",
    **kwargs,
) -> World:
    """A `World` from a `genie.py fit` checkpoint and the tokenizer checkpoint it was trained on.

    Refuses a tokenizer whose vocabulary differs from the one recorded in the Genie checkpoint.
    """
    tokenizer = VideoTokenizer.from_checkpoint(tokenizer_checkpoint, map_location=device)
    ckpt = read_checkpoint(checkpoint, map_location=device)  # once: the network and what it was trained with
    dynamics = load_network(DynamicsModel, checkpoint, "dynamics", ckpt=ckpt)
    recorded = ckpt.get("tokenizer") or {}
    require_same_vocabulary(recorded.get("codebook_size"), tokenizer.codebook_size, checkpoint, tokenizer_checkpoint,
                            recorded.get("path"))  # fmt: skip
    lam = ckpt.get("networks", {}).get("lam") or {}
    kwargs.setdefault("frame_shape", tuple(lam.get("inp_shape", (64, 64))))
    kwargs.setdefault("action_source", ckpt.get("action_source", "latent"))
    kwargs.setdefault("game_frames_per_step", int((ckpt.get("data") or {}).get("frame_skip", 1)))
    return World(tokenizer.to(device), dynamics.to(device), **kwargs)
