"""A tiny synthetic world whose rule is known, saved as the checkpoints play.py and the page
server load: 8x8 frames, a tokenizer that maps them to 2x2 tokens of 4 codes, and a dynamics
model trained (in seconds) on x_{t+1} = (x_t + a_t) mod 4 for 3 actions, so that different
actions must give different frames."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genie.action import LatentAction
from genie.checkpoints import store_network
from genie.dynamics import DynamicsModel
from genie.tokenizer import VideoTokenizer

VOCAB, ACTIONS, SIDE = 4, 3, 8
FRAME_SKIP = 2  # recorded in the checkpoint as a frame-skip data set would be

TOK_ARGS = dict(
    d_codebook=2,  # 4 codes
    enc_desc=[
        ["causal", {"in_channels": 3, "out_channels": 8, "kernel_size": 3}],
        ["residual", {"in_channels": 8, "downsample": [1, 2]}],
        ["residual", {"in_channels": 8, "downsample": [1, 2]}],
        ["proj_out", {"in_channels": 8, "out_channels": 2, "num_groups": 4}],
    ],
    dec_desc=[
        ["causal", {"in_channels": 2, "out_channels": 8, "kernel_size": 3}],
        ["spacetime_upsample", {"in_channels": 8, "out_channels": 8, "space_factor": 2}],
        ["residual", {"in_channels": 8}],
        ["spacetime_upsample", {"in_channels": 8, "out_channels": 8, "space_factor": 2}],
        ["proj_out", {"in_channels": 8, "out_channels": 3, "num_groups": 4}],
    ],
)
LAM_ARGS = dict(
    d_codebook=4, num_actions=ACTIONS, inp_shape=(SIDE, SIDE), n_embd=16, patch_size=4, max_frames=4,
    enc_desc=[["space-time_attn", {"n_rep": 1, "n_embd": 16, "n_head": 2, "d_head": 8}]],
    dec_desc=[["space-time_attn", {"n_rep": 1, "n_embd": 16, "n_head": 2, "d_head": 8, "has_ext": True,
                                   "time_attn_kw": {"key_dim": 4}}]],
)  # fmt: skip


def rule_world(b: int, g: torch.Generator, frames: int = 4):
    x = [torch.randint(0, VOCAB, (b, 1, 2, 2), generator=g)]
    acts = torch.randint(0, ACTIONS, (b, frames), generator=g)
    for t in range(frames - 1):
        x.append((x[-1] + acts[:, t, None, None, None]) % VOCAB)
    return torch.cat(x, 1), acts


def save_genie(path: Path, lam: LatentAction, dynamics: DynamicsModel, tokenizer_path: Path,
                vocab: int | None, data: dict | None = None) -> Path:  # fmt: skip
    """A checkpoint in the format `genie.py fit` writes; `vocab=None`: one that does not record
    its tokenizer (as another writer's might); `data`: what it says of its training data."""
    state = {f"lam.{k}": v for k, v in lam.state_dict().items()}
    state.update({f"dynamics.{k}": v for k, v in dynamics.state_dict().items()})
    ckpt = {"state_dict": state}
    if vocab is not None:
        ckpt["tokenizer"] = {"path": str(tokenizer_path), "codebook_size": vocab}
    if data is not None:
        ckpt["data"] = data
    store_network(ckpt, "lam", lam.config)
    store_network(ckpt, "dynamics", dynamics.config)
    torch.save(ckpt, path)
    return path


def build_synthetic(root: Path) -> dict:
    """Checkpoints and a prompt image under `root`: {"genie", "tokenizer", "image", "root"} paths."""
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(**TOK_ARGS).eval()
    tok_path = root / "tokenizer.ckpt"
    tok_ckpt = {"state_dict": {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}}
    store_network(tok_ckpt, "tokenizer", tokenizer.config)
    torch.save(tok_ckpt, tok_path)
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 64, "n_head": 4, "d_head": 16}),)
    dynamics = DynamicsModel(VOCAB, ACTIONS, desc=desc, embed_dim=64, max_frames=4, max_side=2)
    opt = torch.optim.AdamW(dynamics.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        tokens, acts = rule_world(32, g)
        loss = dynamics.compute_loss(tokens, acts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    lam = LatentAction(**LAM_ARGS).eval()
    genie_path = save_genie(root / "genie.ckpt", lam, dynamics.eval(), tok_path, VOCAB, data={"frame_skip": FRAME_SKIP})
    image = root / "prompt.png"
    Image.fromarray((np.random.default_rng(0).random((SIDE, SIDE, 3)) * 255).astype(np.uint8)).save(image)
    return {"genie": genie_path, "tokenizer": tok_path, "image": image, "root": root}
