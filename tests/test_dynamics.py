"""DynamicsModel and MaskGIT: the seed example, causality, action alignment, the KV cache, sampling."""

import math

import pytest
import torch
import torch.nn.functional as F

from genie import maskgit
from genie.blueprint import BlueprintError
from genie.dynamics import DynamicsModel


def small(tok_vocab=16, act_vocab=4, max_frames=8, max_side=8, width=32, layers=2):
    desc = (("space-time_attn", {"n_rep": layers, "n_embd": width, "n_head": 2, "d_head": 16}),)
    torch.manual_seed(0)
    return DynamicsModel(tok_vocab, act_vocab, desc=desc, embed_dim=width, max_frames=max_frames, max_side=max_side)


def test_seed_readme_example_runs_as_written():
    from genie import DynamicsModel

    blueprint = (("space-time_attn", {"n_rep": 4, "n_embd": 256, "n_head": 4, "d_head": 16, "transpose": False}),)
    tok_codebook, act_codebook = 16, 4
    dynamics = DynamicsModel(desc=blueprint, tok_vocab=tok_codebook, act_vocab=act_codebook, embed_dim=256)
    batch_size, num_frames, img_size = 2, 16, 32
    mock_tokens = torch.randint(0, tok_codebook, (batch_size, num_frames, img_size, img_size))
    mock_act_id = torch.randint(0, act_codebook, (batch_size, num_frames))
    loss = dynamics.compute_loss(mock_tokens, mock_act_id)
    loss.backward()
    assert loss.ndim == 0 and math.isfinite(loss.item())
    new_tokens = dynamics.generate(mock_tokens, mock_act_id, steps=5)
    assert new_tokens.shape == (batch_size, num_frames + 1, img_size, img_size)
    assert torch.equal(new_tokens[:, :num_frames], mock_tokens)  # the context is never rewritten
    assert 0 <= new_tokens.min() and new_tokens.max() < tok_codebook  # every masked token filled


def test_past_logits_ignore_future_tokens_and_actions():
    model = small().eval()
    tokens, acts = torch.randint(0, 16, (2, 6, 4, 4)), torch.randint(0, 4, (2, 6))
    t = 2
    other_tokens, other_acts = tokens.clone(), acts.clone()
    other_tokens[:, t + 1 :] = torch.randint(0, 16, other_tokens[:, t + 1 :].shape)
    other_acts[:, t:] = (acts[:, t:] + 1) % 4  # act_id[:, t] leads *out of* frame t
    with torch.no_grad():
        a, b = model.logits(tokens, acts), model.logits(other_tokens, other_acts)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_action_t_drives_frame_t_plus_1():
    """The alignment, written once in `frame_actions`: act_id[:, t] enters at frame t+1."""
    model = small().eval()
    tokens, acts = torch.randint(0, 16, (2, 5, 4, 4)), torch.randint(0, 4, (2, 5))
    assert torch.equal(model.frame_actions(acts, 5)[:, 1:], acts[:, :4])
    assert (model.frame_actions(acts, 5)[:, 0] == model.no_action).all()
    changed = acts.clone()
    changed[:, 2] = (acts[:, 2] + 1) % 4
    with torch.no_grad():
        a, b = model.logits(tokens, acts), model.logits(tokens, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # frames 0..2 do not see a_2
    assert not torch.allclose(a[:, 3], b[:, 3])  # frame 3 does


def _world(b: int, g: torch.Generator, vocab=4, actions=3, frames=4, side=2):
    """A tiny world whose next frame is a function of the action: x_{t+1} = (x_t + a_t) mod vocab."""
    x = [torch.randint(0, vocab, (b, 1, side, side), generator=g)]
    acts = torch.randint(0, actions, (b, frames), generator=g)
    for t in range(frames - 1):
        x.append((x[-1] + acts[:, t, None, None, None]) % vocab)
    return torch.cat(x, 1), acts


def _next_frame_ce(shift: bool, steps: int = 400) -> float:
    """Train on the tiny world, then the cross-entropy of a fully masked last frame."""

    def late(acts):  # every action arrives one step late: frame t+1 sees a_{t-1}, never a_t
        return torch.cat([torch.zeros_like(acts[:, :1]), acts[:, :-1]], 1) if shift else acts

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 64, "n_head": 4, "d_head": 16}),)
    model = DynamicsModel(4, 3, desc=desc, embed_dim=64, max_frames=4, max_side=2)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(steps):
        tokens, acts = _world(32, g)
        loss = model.compute_loss(tokens, late(acts))
        opt.zero_grad()
        loss.backward()
        opt.step()
    tokens, acts = _world(256, g)
    inputs = tokens.clone()
    inputs[:, -1] = model.mask_id
    with torch.no_grad():
        logits = model.eval().logits(inputs, late(acts))[:, -1]
    return F.cross_entropy(logits.reshape(-1, 4), tokens[:, -1].reshape(-1)).item()


def test_alignment_true_actions_learn_the_world_shifted_actions_cannot():
    assert _next_frame_ce(shift=False) < 0.15  # measured 0.047 (0.148 after 250 steps)
    assert _next_frame_ce(shift=True) > 0.8  # log(3) = 1.10 is the best without a_t; measured 1.26


def test_loss_targets_are_the_real_tokens_at_masked_positions():
    model = small()
    tokens, acts = torch.randint(0, 16, (4, 4, 4, 4)), torch.randint(0, 4, (4, 4))
    out = model.compute_losses(tokens, acts)
    assert not out.mask[:, 0].any() and out.mask[:, 1:].any()  # the first frame is context
    assert abs(out.loss.item() - math.log(16)) < 1.0  # untrained: near chance, not a degenerate 0
    with pytest.raises(ValueError, match="integer tokens"):
        model.compute_loss(tokens.float(), acts)
    with pytest.raises(ValueError, match="act_id"):
        model.compute_loss(tokens, acts[:, :2])


@pytest.mark.parametrize("num_frames", [1, 3])
def test_cached_generation_equals_uncached(num_frames):
    model = small().eval()
    tokens, acts = torch.randint(0, 16, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3 + num_frames - 1))
    kw = dict(steps=6, temperature=0.0, num_frames=num_frames)
    cached = model.generate(tokens, acts, use_cache=True, **kw)
    uncached = model.generate(tokens, acts, use_cache=False, **kw)
    assert cached.shape == (2, 3 + num_frames, 4, 4)
    assert torch.equal(cached, uncached)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    sampled = model.generate(tokens, acts, steps=6, num_frames=num_frames, generator=g1)
    assert torch.equal(sampled, model.generate(tokens, acts, steps=6, num_frames=num_frames, generator=g2))


def test_compiled_rounds_generate_the_same_frames_with_one_graph_for_every_cache_length():
    model = small().eval()
    tokens, acts = torch.randint(0, 16, (2, 1, 4, 4)), torch.randint(0, 4, (2, 4))
    eager = model.generate(tokens, acts, steps=4, temperature=0.0, num_frames=4)
    model.compile_rounds()
    with torch._dynamo.config.patch(error_on_recompile=True):  # the cache fills from 1 to 4 frames
        compiled = model.generate(tokens, acts, steps=4, temperature=0.0, num_frames=4)
    assert torch.equal(compiled, eager)


def test_a_round_that_fails_to_compile_falls_back_to_the_same_frames_uncompiled(caplog):
    """Inductor needs a C++ compiler on a CPU; without one play must go on, uncompiled, with one warning."""
    model = small().eval()
    tokens, acts = torch.randint(0, 16, (2, 1, 4, 4)), torch.randint(0, 4, (2, 2))
    eager = model.generate(tokens, acts, steps=4, temperature=0.0, num_frames=2)
    calls = []

    def broken(*args):
        calls.append(1)
        raise torch._inductor.exc.InvalidCxxCompiler()  # what inductor raises without a C++ compiler

    model._compiled_round = broken  # what compile_rounds sets, failing as a missing compiler would
    assert model.compiled
    with caplog.at_level("WARNING", logger="genie.dynamics"):
        fallen = model.generate(tokens, acts, steps=4, temperature=0.0, num_frames=2)
    assert torch.equal(fallen, eager)
    assert not model.compiled and len(calls) == 1  # tried once, not at every round
    assert [r.getMessage() for r in caplog.records] == [
        "torch.compile of the MaskGIT round failed (InvalidCxxCompiler: No working C++ compiler found in"
        " torch._inductor.config.cpp.cxx: (None, 'g++')); running it uncompiled"
    ]


def test_a_bug_in_a_compiled_round_is_not_hidden_by_the_fallback():
    model = small().eval()

    def buggy(*args):
        raise IndexError("a bug, not a compiler failure")

    model._compiled_round = buggy
    with pytest.raises(IndexError, match="a bug"):
        model.generate(torch.randint(0, 16, (2, 1, 4, 4)), torch.randint(0, 4, (2, 1)), steps=4)
    assert model.compiled  # still compiled: nothing was silently switched off


def test_generation_beyond_max_frames_is_refused():
    model = small(max_frames=4)
    with pytest.raises(ValueError, match="max_frames"):
        model.generate(torch.zeros(1, 4, 2, 2, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long), steps=2)


def test_blueprint_must_be_unconditioned_st_blocks_of_the_model_width():
    with pytest.raises(BlueprintError, match="embed_dim"):
        DynamicsModel(8, 2, desc=(("space-time_attn", {"n_embd": 32, "n_head": 2, "d_head": 16}),), embed_dim=64)
    with pytest.raises(BlueprintError, match="space-time_attn"):
        DynamicsModel(8, 2, desc=(("residual", {"in_channels": 64}),), embed_dim=64)


# --- MaskGIT ---


def test_cosine_schedule_runs_from_all_masked_to_none():
    values = [maskgit.cosine_schedule(i / 10) for i in range(11)]
    assert values[0] == 1.0 and values[-1] < 1e-12
    assert all(a > b for a, b in zip(values, values[1:]))


def test_training_mask_spares_the_first_frame_and_has_rates_in_range():
    g = torch.Generator().manual_seed(0)
    mask = maskgit.training_mask(256, 5, 64, (0.5, 1.0), generator=g)
    assert not mask[:, 0].any()
    rates = mask[:, 1:].float().mean(dim=(1, 2))
    assert rates.min() > 0.4 and rates.max() <= 1.0 and abs(rates.mean().item() - 0.75) < 0.03


def test_decode_feeds_back_commits_and_fills_every_token():
    s, vocab, steps, seen = 16, 5, 8, []
    g = torch.Generator().manual_seed(0)

    def logits_fn(frame, positions):
        assert (frame.gather(1, positions) == vocab).all() and positions.shape[1] == (frame == vocab).sum(1)[0]
        seen.append(frame.clone())
        return torch.randn(*positions.shape, vocab, generator=g)

    out = maskgit.decode(logits_fn, 3, s, mask_id=vocab, steps=steps, temperature=1.0)
    assert len(seen) == steps and (out < vocab).all()
    masked = [(f == vocab).sum(1) for f in seen]
    assert masked[0].eq(s).all()  # starts all masked
    assert all((a > b).all() for a, b in zip(masked, masked[1:]))  # commits at every round
    for before, after in zip(seen, seen[1:] + [out]):  # committed tokens are never changed
        kept = before != vocab
        assert torch.equal(after[kept], before[kept])
    expected = [min(math.floor(s * maskgit.cosine_schedule(i / steps)), s) for i in range(steps)]
    assert [int(m[0]) for m in masked][1:] == [e for e in expected[1:]]
