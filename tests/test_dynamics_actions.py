"""DynamicsModel's `action_every_block` and `action_token` options: the action reaches every block, or is a
token of its own in each frame, in training and
in every generation path (uncached, cached, compiled), and frames stay causal in their actions."""

import pytest
import torch

from genie.dynamics import DynamicsModel
from helpers.generation import generate_every_way


def conditioned(seed: int = 0) -> DynamicsModel:
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    torch.manual_seed(seed)
    model = DynamicsModel(16, 4, max_frames=8, desc=desc, embed_dim=32, max_side=8, action_every_block=True)
    with torch.no_grad():  # trained weights are not zero: give the per-block embeddings some
        model.act_blocks.normal_(0, 0.5)
        model.act_embed.weight.zero_()  # the input embedding says nothing: only the blocks see the action
    return model.eval()


def test_per_block_embeddings_start_at_zero_so_the_option_starts_as_the_plain_model():
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    torch.manual_seed(0)
    plain = DynamicsModel(16, 4, max_frames=8, desc=desc, embed_dim=32, max_side=8)
    torch.manual_seed(0)
    every = DynamicsModel(16, 4, max_frames=8, desc=desc, embed_dim=32, max_side=8, action_every_block=True)
    tokens, acts = torch.randint(0, 16, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3))
    assert torch.equal(plain.logits(tokens, acts), every.logits(tokens, acts))


def test_the_blocks_read_the_action_of_each_frame_and_no_later_one():
    model = conditioned()
    tokens = torch.randint(0, 16, (2, 4, 4, 4))
    acts = torch.randint(0, 4, (2, 4))
    base = model.logits(tokens, acts)
    other = acts.clone()
    other[:, 1] = (acts[:, 1] + 1) % 4  # leads frame 1 -> 2
    changed = model.logits(tokens, other)
    assert torch.allclose(base[:, :2], changed[:, :2])  # frames 0 and 1 come before that action
    assert not torch.allclose(base[:, 2], changed[:, 2], atol=1e-3)  # frame 2 reads it at every block


def test_the_loss_trains_the_per_block_embeddings():
    model = conditioned().train()
    tokens, acts = torch.randint(0, 16, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3))
    model.compute_loss(tokens, acts).backward()
    assert model.act_blocks.grad is not None and model.act_blocks.grad.abs().sum() > 0


@pytest.mark.parametrize("num_frames", [1, 3])
def test_cached_and_compiled_generation_equal_uncached(num_frames):
    model = conditioned()
    tokens, acts = torch.randint(0, 16, (2, 2, 4, 4)), torch.randint(0, 4, (2, 2 + num_frames - 1))
    uncached = generate_every_way(model, tokens, acts, num_frames)
    # and the action decides the frame: another action for the new frame gives another frame
    other = acts.clone()
    other[:, -1] = (acts[:, -1] + 2) % 4
    kw = dict(steps=5, temperature=0.0, num_frames=num_frames)
    assert not torch.equal(model.generate(tokens, other, use_cache=False, **kw), uncached)


def tokened(seed: int = 0) -> DynamicsModel:
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    torch.manual_seed(seed)
    model = DynamicsModel(16, 4, max_frames=8, desc=desc, embed_dim=32, max_side=8, action_token=True)
    with torch.no_grad():
        model.act_embed.weight.zero_()  # the added embedding says nothing: only the action token carries it
        model.act_token.weight.normal_(0, 1.0)
    return model.eval()


def test_the_action_token_is_read_by_its_frame_and_no_earlier_one():
    model = tokened()
    tokens, acts = torch.randint(0, 16, (2, 4, 4, 4)), torch.randint(0, 4, (2, 4))
    base = model.logits(tokens, acts)
    assert base.shape == (2, 4, 16, 16)  # the action token gets no logits
    other = acts.clone()
    other[:, 1] = (acts[:, 1] + 1) % 4  # leads frame 1 -> 2
    changed = model.logits(tokens, other)
    assert torch.allclose(base[:, :2], changed[:, :2])
    assert not torch.allclose(base[:, 2], changed[:, 2], atol=1e-3)


def test_the_loss_trains_the_action_token():
    model = tokened().train()
    tokens, acts = torch.randint(0, 16, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3))
    model.compute_loss(tokens, acts).backward()
    assert model.act_token.weight.grad is not None and model.act_token.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("num_frames", [1, 3])
def test_with_the_action_token_cached_and_compiled_generation_equal_uncached(num_frames):
    model = tokened()
    tokens, acts = torch.randint(0, 16, (2, 2, 4, 4)), torch.randint(0, 4, (2, 2 + num_frames - 1))
    generate_every_way(model, tokens, acts, num_frames)  # that the token is read: the logits test above
