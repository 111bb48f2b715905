"""Tokens as quantizer digits (`genie.digits`, `DynamicsModel(factorized=True)`): the digits are the
quantizers' own, the head is a distribution over codes, the model learns and generates as the plain one."""

import pytest
import torch
import torch.nn.functional as F

from genie.digits import DigitEmbedding, DigitHead, digit_table
from genie.dynamics import DynamicsModel
from genie.quantize import FSQ, LFQ
from helpers.generation import generate_every_way
from helpers.training import last_frame_ce

LEVELS = [4, 2, 3]  # 24 codes
DESC = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 2, "d_head": 16}),)


def factorized(seed: int = 0, levels=LEVELS, **kw) -> DynamicsModel:
    torch.manual_seed(seed)
    vocab = torch.tensor(levels).prod().item()
    return DynamicsModel(vocab, 4, max_frames=8, desc=DESC, embed_dim=32, max_side=8, factorized=True,
                         token_levels=levels, **kw)  # fmt: skip


def test_digits_are_the_quantizers_own():
    """Digit i of every id is the level FSQ decodes on dimension i (and LFQ's bit i)."""
    levels = [8, 5, 5, 5]
    fsq = FSQ(4, levels)
    codes = fsq.indices_to_codes(torch.arange(1000).view(1, 1, 1, 1000))[0, :, 0, 0].T  # (V D) in [-1, 1]
    assert torch.equal((codes * fsq.half_width + fsq.half_width).round().long(), digit_table(levels))
    lfq = LFQ(6, 6)
    bits = lfq.indices_to_codes(torch.arange(64).view(1, 1, 1, 64))[0, :, 0, 0].T  # (V D) in {-1, 1}
    assert torch.equal(((bits + 1) / 2).long(), digit_table(lfq.levels))


def test_the_head_is_a_distribution_over_codes_whose_digit_marginals_are_its_softmaxes():
    head = DigitHead(16, LEVELS)
    x = torch.randn(5, 16)
    logp = head(x)  # (5 V)
    assert logp.shape == (5, 24)
    torch.testing.assert_close(logp.logsumexp(-1), torch.zeros(5), atol=1e-5, rtol=0)
    digits = digit_table(LEVELS)
    raw = head.proj(x).split(LEVELS, dim=-1)
    for i, n in enumerate(LEVELS):  # summing p(code) over the codes with digit i = k gives softmax_i(k)
        marginal = torch.stack([logp.exp()[:, digits[:, i] == k].sum(-1) for k in range(n)], -1)
        torch.testing.assert_close(marginal, raw[i].softmax(-1), atol=1e-5, rtol=0)


def test_the_embedding_is_additive_in_the_digits_and_the_mask_is_its_own():
    emb = DigitEmbedding(LEVELS, 8)
    ids = lambda *d: sum(v * r for v, r in zip(d, [1, 4, 8]))  # mixed radix of LEVELS
    e = lambda *d: emb(torch.tensor(ids(*d)))
    # changing digit 0 from 1 to 3 moves the embedding by the same vector whatever the other digits are
    torch.testing.assert_close(e(3, 0, 2) - e(1, 0, 2), e(3, 1, 0) - e(1, 1, 0))
    mask = emb(torch.tensor(24))
    assert all(not torch.allclose(mask, emb(torch.tensor(i))) for i in range(24))


def test_levels_must_multiply_to_the_vocabulary():
    with pytest.raises(ValueError, match="token_levels"):
        DynamicsModel(25, 4, desc=DESC, embed_dim=32, factorized=True, token_levels=LEVELS)
    with pytest.raises(ValueError, match="token_levels"):
        DynamicsModel(24, 4, desc=DESC, embed_dim=32, factorized=True)


def _world(b: int, g: torch.Generator, frames=4, side=2):
    """A tiny world whose next frame is a function of the action: each token's id moves by a_t
    (with carries from digit to digit: not a world made for digits)."""
    x = [torch.randint(0, 24, (b, 1, side, side), generator=g)]
    acts = torch.randint(0, 4, (b, frames), generator=g)
    for t in range(frames - 1):
        x.append((x[-1] + acts[:, t, None, None, None]) % 24)
    return torch.cat(x, 1), acts


def test_a_factorized_model_learns_a_world_driven_by_its_actions():
    torch.manual_seed(0)
    model = DynamicsModel(24, 4, max_frames=4, max_side=2, factorized=True, token_levels=LEVELS, embed_dim=64,
                          desc=(("space-time_attn", {"n_rep": 2, "n_embd": 64, "n_head": 4, "d_head": 16}),))  # fmt: skip
    ce = last_frame_ce(model, _world, steps=500)
    assert ce < 0.5  # measured 0.22 (0.66 after 300 steps); chance log(24) = 3.18, without a_t log(4) = 1.39


@pytest.mark.parametrize("option", [{}, {"copy_gate": True}, {"action_token": True}])
def test_factorized_generation_is_the_same_cached_compiled_and_uncached(option):
    model = factorized(**option).eval()
    tokens, acts = torch.randint(0, 24, (2, 2, 4, 4)), torch.randint(0, 4, (2, 3))
    frames = generate_every_way(model, tokens, acts, num_frames=2)
    assert frames.shape == (2, 4, 4, 4) and frames.max() < 24


def test_the_loss_is_the_sum_of_the_digits_cross_entropies():
    model = factorized().train()
    tokens, acts = torch.randint(0, 24, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3))
    torch.manual_seed(1)
    out = model.compute_losses(tokens, acts)
    out.loss.backward()
    assert model.head.proj.weight.grad.abs().sum() > 0 and model.tok_embed.table.weight.grad.abs().sum() > 0
    torch.manual_seed(1)  # the same mask: the loss from each digit's own softmax
    inputs = torch.where(out.mask.view(2, 3, 4, 4), model.mask_id, tokens)
    with torch.no_grad():
        x, _, _ = model._features(inputs, acts)
        per_digit = model.head.proj(model.norm(x[out.mask])).split(LEVELS, -1)
    digits = digit_table(LEVELS)[tokens.flatten(2)[out.mask]]  # (n D)
    expected = sum(F.cross_entropy(p, digits[:, i]) for i, p in enumerate(per_digit))
    torch.testing.assert_close(out.loss.detach(), expected, atol=1e-4, rtol=1e-4)
