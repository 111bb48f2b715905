"""DynamicsModel's `copy_gate` option: a per-token bias toward the token one frame earlier, the
same in training (pointing at the unmasked past) and in every generation path."""

import pytest
import torch

from genie.dynamics import DynamicsModel
from helpers.generation import generate_every_way

DESC = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 2, "d_head": 16}),)


def gated(seed: int = 0, **kw) -> DynamicsModel:
    torch.manual_seed(seed)
    return DynamicsModel(16, 4, max_frames=8, desc=DESC, embed_dim=32, max_side=8, copy_gate=True, **kw).eval()


def test_an_untrained_gated_model_copies_the_last_frame_and_a_plain_one_does_not():
    tokens, acts = torch.randint(0, 16, (3, 2, 4, 4)), torch.randint(0, 4, (3, 4))
    frames = gated().generate(tokens, acts, steps=4, temperature=0.0, num_frames=3)
    for k in range(3):  # every new frame repeats the one before it
        assert torch.equal(frames[:, 2 + k], tokens[:, 1])
    torch.manual_seed(0)
    plain = DynamicsModel(16, 4, max_frames=8, desc=DESC, embed_dim=32, max_side=8).eval()
    assert not torch.equal(plain.generate(tokens, acts, steps=4, temperature=0.0)[:, 2], tokens[:, 1])


def test_the_gate_points_at_the_unmasked_previous_frame_and_skips_frame_0():
    model = gated()
    clean = torch.randint(0, 16, (2, 3, 4, 4))
    acts = torch.randint(0, 4, (2, 3))
    masked = clean.clone()
    masked[:, :2] = model.mask_id  # frames 0 and 1 fully masked, as training can show them
    with_ref = model.logits(masked, acts, reference=clean)
    model.copy_gate.bias.data.zero_()  # the same model without the bias
    without = model.logits(masked, acts, reference=clean)
    bump = with_ref - without  # (b T s V)
    assert torch.equal(bump[:, 0], torch.zeros_like(bump[:, 0]))  # frame 0 has no previous frame
    for t in (1, 2):
        prev = clean[:, t - 1].flatten(1)  # (b s)
        at_prev = torch.gather(bump[:, t], -1, prev[..., None])[..., 0]
        assert torch.allclose(at_prev, torch.full_like(at_prev, torch.log(torch.tensor(16.0)).item()))
        assert torch.isclose(bump[:, t].sum(), at_prev.sum())  # and nowhere else


def test_the_loss_trains_the_gate():
    model = gated().train()
    tokens, acts = torch.randint(0, 16, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3))
    model.compute_loss(tokens, acts).backward()
    assert model.copy_gate.weight.grad.abs().sum() > 0 and model.copy_gate.bias.grad.abs() > 0


@pytest.mark.parametrize("num_frames", [1, 3])
def test_cached_and_compiled_generation_equal_uncached(num_frames):
    model = gated()
    with torch.no_grad():  # a trained gate depends on the features: make it so
        model.copy_gate.weight.normal_(0, 2.0)
        model.copy_gate.bias.fill_(1.0)
    tokens, acts = torch.randint(0, 16, (2, 2, 4, 4)), torch.randint(0, 4, (2, 2 + num_frames - 1))
    generate_every_way(model, tokens, acts, num_frames)


def test_one_round_of_generation_is_the_argmax_of_the_training_logits():
    model = gated()
    with torch.no_grad():
        model.copy_gate.weight.normal_(0, 2.0)
    tokens, acts = torch.randint(0, 16, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3))
    new = model.generate(tokens, acts, steps=1, temperature=0.0)[:, -1]
    blank = torch.full_like(tokens[:, :1], model.mask_id)
    logits = model.logits(torch.cat([tokens, blank], dim=1), acts)[:, -1]  # (b s V)
    assert torch.equal(new.flatten(1), logits.argmax(-1))
