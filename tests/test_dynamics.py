"""DynamicsModel and MaskGIT: the seed example, causality, action alignment, the KV cache, sampling."""

import math

import pytest
import torch
import torch.nn.functional as F

from genie import maskgit
from genie.attention import Attention
from genie.blueprint import BlueprintError
from genie.dynamics import DynamicsModel
from helpers.training import last_frame_ce


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
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 64, "n_head": 4, "d_head": 16}),)
    model = DynamicsModel(4, 3, desc=desc, embed_dim=64, max_frames=4, max_side=2)
    return last_frame_ce(model, _world, steps, drive=late)


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


@pytest.mark.parametrize("option", [{}, {"copy_gate": True}, {"action_token": True}])
def test_loss_is_the_cross_entropy_of_the_full_logits_at_the_masked_tokens(option):
    """Training computes the head only at masked tokens; it must equal the full grid's logits there."""
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    model = DynamicsModel(
        16, 4, desc=desc, embed_dim=32, max_frames=8, max_side=8, mask_rate=(0.0, 1.0), mask_per_frame=True, **option
    )
    tokens, acts = torch.randint(0, 16, (3, 4, 4, 4)), torch.randint(0, 4, (3, 4))
    out = model.compute_losses(tokens, acts)
    masked = torch.where(out.mask.view(tokens.shape), model.mask_id, tokens)
    full = model.logits(masked, acts, reference=tokens)  # (b t s V)
    target = tokens.flatten(2)
    expected = F.cross_entropy(full[out.mask], target[out.mask])
    assert out.mask.sum() > 0
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    assert out.accuracy == (full[out.mask].argmax(-1) == target[out.mask]).float().mean()


def test_expected_weight_adds_the_squared_distance_of_the_expected_digits_in_quantizer_steps():
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    torch.manual_seed(0)
    model = DynamicsModel(12, 4, desc=desc, embed_dim=32, max_frames=8, max_side=8, mask_rate=(0.5, 1.0),
                          token_levels=[3, 4], expected_weight=0.5)  # fmt: skip
    tokens, acts = torch.randint(0, 12, (3, 4, 4, 4)), torch.randint(0, 4, (3, 4))
    out = model.compute_losses(tokens, acts)
    masked = torch.where(out.mask.view(tokens.shape), model.mask_id, tokens)
    full = model.logits(masked, acts)[out.mask]  # (n V)
    target = tokens.flatten(2)[out.mask]
    # ids in the mixed radix (3, 4), dimension 0 least significant: id = d0 + 3 * d1
    digits = torch.stack([torch.arange(12) % 3, torch.arange(12) // 3], -1).float()  # (V 2)
    error = (full.softmax(-1) @ digits - digits[target]).square().sum(-1).mean()
    torch.testing.assert_close(out.loss, F.cross_entropy(full, target) + 0.5 * error, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="token_levels"):
        DynamicsModel(12, 4, desc=desc, embed_dim=32, expected_weight=0.5)


def test_changed_weight_weighs_the_tokens_that_differ_from_the_frame_before():
    desc = (("space-time_attn", {"n_rep": 1, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    kw = dict(desc=desc, embed_dim=32, max_frames=8, max_side=8, mask_rate=(1.0, 1.0), mask_per_frame=True)
    tokens = torch.randint(0, 4, (2, 3, 4, 4))  # 4 codes on 16 places: some repeat, some change
    acts = torch.randint(0, 4, (2, 3))
    for w in (1.0, 3.0):
        torch.manual_seed(0)
        model = DynamicsModel(16, 4, changed_weight=w, **kw)
        out = model.compute_losses(tokens, acts)
        full = model.logits(torch.where(out.mask.view(tokens.shape), model.mask_id, tokens), acts)[:, 1:]
        ce = F.cross_entropy(full.flatten(0, 2), tokens[:, 1:].flatten(), reduction="none")  # every token of frames 1..
        changed = (tokens[:, 1:] != tokens[:, :-1]).flatten().float()
        weight = 1 + (w - 1) * changed
        torch.testing.assert_close(out.loss, (ce * weight).sum() / weight.sum(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="changed_weight"):
        DynamicsModel(16, 4, changed_weight=0.0, **kw)


def test_changed_weight_turns_an_uncertain_copy_into_a_change():
    """Frame 1 repeats frame 0 in 60 % of the clips and differs in the rest, with nothing telling
    which: trained plainly, the most likely token is the copy; with the changed tokens weighing 3
    (0.4 x 3 > 0.6), the change."""
    desc = (("space-time_attn", {"n_rep": 1, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    first = torch.zeros(20, 1, 2, 2, dtype=torch.long)
    second = torch.where(torch.arange(20)[:, None, None, None] < 12, 0, 1).expand(20, 1, 2, 2)
    tokens, acts = torch.cat([first, second], dim=1), torch.zeros(20, 2, dtype=torch.long)
    picks = {}
    for w in (1.0, 3.0):
        torch.manual_seed(0)
        model = DynamicsModel(4, 1, changed_weight=w, desc=desc, embed_dim=32, max_frames=4, max_side=4,
                              mask_rate=(1.0, 1.0), mask_per_frame=True)  # fmt: skip
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(60):
            opt.zero_grad()
            model.compute_loss(tokens, acts).backward()
            opt.step()
        with torch.no_grad():
            masked = torch.cat([first[:1], torch.full_like(first[:1], model.mask_id)], dim=1)
            picks[w] = model.logits(masked, acts[:1])[0, 1].argmax(-1)  # (4) the next frame's places
    assert (picks[1.0] == 0).all() and (picks[3.0] == 1).all(), picks


@pytest.mark.parametrize("filled", [1, 3, 5])
def test_one_new_token_over_a_fixed_cache_attends_as_sdpa_over_the_filled_frames(filled):
    """A MaskGIT round's temporal attention (one query per place, products and sums over the
    whole buffer with its empty entries masked) equals SDPA over only the frames filled so far."""
    torch.manual_seed(0)
    attn = Attention(16, n_head=2, d_head=8, causal=True)
    past, new = torch.randn(3, 10, filled, 16), torch.randn(3, 10, 1, 16)  # (b s t e): 10 places
    _, cache = attn.attend(past)
    want, _ = attn.attend(new, cache)  # SDPA over the filled frames and the new one
    got, _ = attn.attend(new, cache.with_room(6 - filled).fixed())  # a 6-frame buffer, partly empty
    assert got.shape == want.shape == (3, 10, 1, 16)
    assert torch.allclose(got, want, atol=1e-5)
    other = cache.with_room(6 - filled).fixed()
    other.k[..., filled:, :] = 1e3  # what lies in the empty entries is never read
    assert torch.allclose(attn.attend(new, other)[0], want, atol=1e-5)


@pytest.mark.parametrize("num_frames,transpose", [(1, False), (3, False), (3, True)])
def test_cached_generation_equals_uncached(num_frames, transpose):
    model = small().eval()
    for block in model.blocks:
        block.transpose = transpose  # temporal attention before spatial: the cache must still match
    tokens, acts = torch.randint(0, 16, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3 + num_frames - 1))
    kw = dict(steps=6, temperature=0.0, num_frames=num_frames)
    cached = model.generate(tokens, acts, use_cache=True, **kw)
    uncached = model.generate(tokens, acts, use_cache=False, **kw)
    assert cached.shape == (2, 3 + num_frames, 4, 4)
    assert torch.equal(cached, uncached)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    sampled = model.generate(tokens, acts, steps=6, num_frames=num_frames, generator=g1)
    assert torch.equal(sampled, model.generate(tokens, acts, steps=6, num_frames=num_frames, generator=g2))


@pytest.mark.parametrize("factorized", [False, True])
def test_expected_codes_of_one_round_are_the_training_distribution_over_the_code_table(factorized):
    """One MaskGIT round decides every token from the all-masked frame, so each expected code is
    softmax(training logits of that frame) @ values, and the tokens are those of `generate`."""
    torch.manual_seed(0)
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    model = DynamicsModel(16, 4, desc=desc, embed_dim=32, max_frames=8, max_side=8, factorized=factorized,
                          token_levels=[4, 4] if factorized else None).eval()  # fmt: skip
    tokens, acts = torch.randint(0, 16, (2, 3, 4, 4)), torch.randint(0, 4, (2, 3))
    values = torch.randn(16, 3)
    out = model.generate_expected(tokens, acts, values, steps=1, temperature=0.0)
    assert torch.equal(out.tokens, model.generate(tokens, acts, steps=1, temperature=0.0))
    masked = torch.cat([tokens, torch.full_like(tokens[:, :1], model.mask_id)], dim=1)
    probs = model.logits(masked, acts).softmax(-1)[:, -1]  # (b s V), the new frame
    want = torch.einsum("bsv,vd->bds", probs, values).reshape(2, 3, 1, 4, 4)
    assert out.expected.shape == (2, 3, 1, 4, 4)
    assert torch.allclose(out.expected, want, atol=1e-5)
    two = model.generate_expected(tokens, torch.cat([acts, acts[:, :1]], 1), values, steps=4, temperature=0.0,
                                  num_frames=2)
    assert two.tokens.shape == (2, 5, 4, 4) and two.expected.shape == (2, 3, 2, 4, 4)


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


def test_cosine_schedule_by_hand():
    """gamma(r) = cos(pi r / 2) (MaskGIT Sec. 3.2) at points whose cosines are known exactly."""
    assert maskgit.cosine_schedule(0.0) == 1.0  # all masked before the first round
    assert maskgit.cosine_schedule(1 / 3) == pytest.approx(math.sqrt(3) / 2, abs=1e-12)  # cos 30 deg
    assert maskgit.cosine_schedule(0.5) == pytest.approx(math.sqrt(2) / 2, abs=1e-12)  # cos 45 deg
    assert maskgit.cosine_schedule(2 / 3) == pytest.approx(0.5, abs=1e-12)  # cos 60 deg
    assert maskgit.cosine_schedule(1.0) == pytest.approx(0.0, abs=1e-12)  # none masked after the last
    assert maskgit.cosine_schedule(-0.5) == 1.0 and maskgit.cosine_schedule(1.5) == pytest.approx(0.0, abs=1e-12)


def test_training_mask_spares_the_first_frame_and_has_rates_in_range():
    g = torch.Generator().manual_seed(0)
    mask = maskgit.training_mask(256, 5, 64, (0.5, 1.0), generator=g)
    assert not mask[:, 0].any()
    rates = mask[:, 1:].float().mean(dim=(1, 2))
    assert rates.min() > 0.4 and rates.max() <= 1.0 and abs(rates.mean().item() - 0.75) < 0.03


def _decode_masked_counts(s: int, steps: int, vocab: int = 5, b: int = 3) -> tuple[list[int], torch.Tensor]:
    """Decode with random logits; the number of masked tokens each round was given, and the frame."""
    g, seen = torch.Generator().manual_seed(0), []

    def logits_fn(frame, positions):
        # the positions asked for are exactly the masked ones, the same number in every row
        assert (frame.gather(1, positions) == vocab).all() and positions.shape[1] == (frame == vocab).sum(1)[0]
        seen.append(frame.clone())
        return torch.randn(*positions.shape, vocab, generator=g)

    out = maskgit.decode(logits_fn, b, s, mask_id=vocab, steps=steps, temperature=1.0).tokens
    masked = [(f == vocab).sum(1) for f in seen]
    assert all(m.eq(m[0]).all() for m in masked)  # every row of the batch follows the same schedule
    for before, after in zip(seen, seen[1:] + [out]):  # committed tokens are never changed
        kept = before != vocab
        assert torch.equal(after[kept], before[kept])
    assert (out < vocab).all()  # every token filled
    return [int(m[0]) for m in masked], out


def test_decode_masks_a_cosine_share_of_the_frame_each_round():
    # floor(16 cos(k * 11.25 deg)), k = 0..7: cos = 1, .981, .924, .831, .707, .556, .383, .195
    assert _decode_masked_counts(16, 8)[0] == [16, 15, 14, 13, 11, 8, 6, 3]
    # CoinRun's 16 x 16 tokens in Genie's 25 rounds: floor(256 cos(k * 3.6 deg)), k = 0..24
    assert _decode_masked_counts(256, 25, b=1)[0] == [
        256, 255, 253, 251, 247, 243, 238, 231, 224, 216, 207, 197, 186, 175, 163, 150, 137, 123, 108, 94, 79, 63, 47,
        32, 16,
    ]  # fmt: skip
    # 4 tokens in 8 rounds: the schedule would keep 3, 3, 3, 2 masked, but every round commits at
    # least one, so the frame is full after 4 rounds and the other 4 are never run
    assert _decode_masked_counts(4, 8)[0] == [4, 3, 2, 1]
    assert _decode_masked_counts(5, 1)[0] == [5]  # one round: one-shot, all at once


def test_decode_keeps_the_most_confident_samples_and_masks_the_rest():
    """Round 1 of 2 over 4 tokens keeps floor(4 cos 45 deg) = 2 masked: the two whose sampled
    (here: argmax) token the model is least sure of."""
    confidences = torch.tensor([[0.9, 0.4, 0.8, 0.3]])  # p(token 1) at each position; p(token 0) = 1 - that
    calls = []

    def logits_fn(frame, positions):
        calls.append((frame.clone(), positions.clone()))
        p = confidences[:, :, None].gather(1, positions[:, :, None]).expand(-1, -1, 2).clone()  # (b m 2)
        p[..., 0] = 1 - p[..., 1]
        return p.log()

    out = maskgit.decode(logits_fn, 1, 4, mask_id=2, steps=2, temperature=0.0).tokens
    # argmax: tokens 1, 0, 1, 0 with probabilities .9, .6, .8, .7: positions 0 and 2 are committed
    assert calls[1][0].tolist() == [[1, 2, 1, 2]]
    assert sorted(calls[1][1][0].tolist()) == [1, 3]  # the two least sure (.6, .7) are asked for again
    assert out.tolist() == [[1, 0, 1, 0]]


def test_decode_gives_each_token_the_expected_value_of_the_round_that_committed_it():
    """As above, 4 tokens in 2 rounds; token 1 is worth 1 and token 0 nothing, so a token's
    expected value is p(token 1) of the round that committed it: round 1 commits positions 0 and
    2 (p = .9, .8); round 2 asks for 1 and 3 again, now with p = .2 and .1."""
    rounds = [torch.tensor([[0.9, 0.4, 0.8, 0.3]]), torch.tensor([[0.9, 0.2, 0.8, 0.1]])]
    calls = []

    def logits_fn(frame, positions):
        p1 = rounds[len(calls)][:, :, None].gather(1, positions[:, :, None])  # (b m 1)
        calls.append(positions)
        return torch.cat([1 - p1, p1], -1).log()

    values = torch.tensor([[0.0, 5.0], [1.0, 5.0]])  # (V d): a second dimension the same for both
    out = maskgit.decode(logits_fn, 1, 4, mask_id=2, steps=2, temperature=0.0, values=values)
    assert out.tokens.tolist() == [[1, 0, 1, 0]]
    assert torch.allclose(out.expected[0], torch.tensor([[0.9, 5.0], [0.2, 5.0], [0.8, 5.0], [0.1, 5.0]]))
    calls.clear()
    assert maskgit.decode(logits_fn, 1, 4, mask_id=2, steps=2, temperature=0.0).expected is None


def test_decode_refuses_zero_rounds():
    with pytest.raises(ValueError, match="steps"):
        maskgit.decode(lambda f, p: torch.zeros(*p.shape, 2), 1, 4, mask_id=2, steps=0)


def test_sample_categorical_draws_each_entry_with_its_probability():
    """Chi-square goodness of fit, 20,000 draws per distribution, one uniform per draw. The second
    distribution is unnormalised (0, 1, 0, 3) = (0, .25, 0, .75): zeros first and in the middle."""
    n = 20_000
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.0, 1.0, 0.0, 3.0]])[:, None].expand(2, n, 4)
    draws = maskgit.sample_categorical(probs, torch.Generator().manual_seed(0))
    assert draws.shape == (2, n) and draws.dtype == torch.long
    for row, expected, critical in (
        (draws[0], {0: 10_000, 1: 6_000, 2: 4_000}, 13.816),  # chi2 0.999 quantile, 2 dof: 2 ln 1000
        (draws[1], {1: 5_000, 3: 15_000}, 10.828),  # chi2 0.999 quantile, 1 dof (tables)
    ):
        counts = torch.bincount(row, minlength=4).tolist()
        assert {i: c for i, c in enumerate(counts) if c}.keys() == expected.keys()  # never a zero-probability entry
        chi2 = sum((counts[i] - e) ** 2 / e for i, e in expected.items())
        assert chi2 < critical, (counts, chi2)
    # and it is the generator that decides: the same seed draws the same, another seed does not
    again = maskgit.sample_categorical(probs, torch.Generator().manual_seed(0))
    other = maskgit.sample_categorical(probs, torch.Generator().manual_seed(1))
    assert torch.equal(again, draws) and not torch.equal(other, draws)


def test_sample_categorical_with_one_certain_entry_always_draws_it():
    probs = torch.zeros(1000, 7)
    probs[:, 6] = 1.0  # the last entry: a uniform at the top of [0, 1) must not run past it
    assert (maskgit.sample_categorical(probs, torch.Generator().manual_seed(0)) == 6).all()
    probs = torch.zeros(1000, 7)
    probs[:, 0] = 1e-30  # tiny but not zero, alone: still the only choice
    assert (maskgit.sample_categorical(probs, torch.Generator().manual_seed(0)) == 0).all()


def test_context_noise_replaces_only_unmasked_context_tokens_and_keeps_the_targets():
    model = small(tok_vocab=64)
    model.context_noise = 0.8
    seen = {}
    features = model._features

    def spy(inputs, act_id, reference=None, moved=None):
        seen["inputs"], seen["reference"] = inputs, reference
        return features(inputs, act_id, reference=reference, moved=moved)

    model._features = spy
    tokens, acts = torch.randint(0, 64, (8, 6, 8, 8)), torch.randint(0, 4, (8, 6))
    out = model.compute_losses(tokens, acts)
    inputs, mask = seen["inputs"].flatten(2), out.mask
    assert (inputs[mask] == model.mask_id).all() and (inputs[~mask] != model.mask_id).all()
    changed = inputs[~mask] != tokens.flatten(2)[~mask]
    # rates ~ U(0, 0.8): 0.4 of the context on average, less the random codes that hit the true one
    assert 0.25 < changed.float().mean() < 0.55
    assert torch.equal(seen["reference"].flatten(2)[~mask], inputs[~mask])  # the copy gate reads the noised context
    # the loss is the cross-entropy against the true tokens of the masked places
    full = model.logits(seen["inputs"], acts)[mask]
    torch.testing.assert_close(out.loss, F.cross_entropy(full, tokens.flatten(2)[mask]), rtol=1e-5, atol=1e-5)
    model.context_noise = 0.0
    clean = model.compute_losses(tokens, acts).mask
    assert torch.equal(seen["inputs"].flatten(2)[~clean], tokens.flatten(2)[~clean])  # off: the context is the tokens
    with pytest.raises(ValueError, match="context_noise"):
        DynamicsModel(16, 4, desc=(("space-time_attn", {"n_rep": 1, "n_embd": 32, "n_head": 2, "d_head": 16}),),
                      embed_dim=32, context_noise=1.5)  # fmt: skip


def test_self_context_reads_the_models_own_guesses_in_chosen_clips_and_scores_the_true_tokens():
    model = small(tok_vocab=64)
    model.self_context = 1.0  # every clip
    seen = []
    features = model._features

    def spy(inputs, act_id, reference=None, moved=None):
        seen.append((inputs, reference))
        return features(inputs, act_id, reference=reference, moved=moved)

    model._features = spy
    tokens, acts = torch.randint(0, 64, (4, 6, 8, 8)), torch.randint(0, 4, (4, 6))
    out = model.compute_losses(tokens, acts)
    (first, _), (second, reference) = seen  # the guessing pass, then the loss pass
    flat, guessed = tokens.flatten(2), first.flatten(2) == model.mask_id
    context = reference.flatten(2)
    # kept tokens of the first pass stay true; guessed ones are the model's argmax there, not the truth
    assert torch.equal(context[~guessed], flat[~guessed])
    with torch.no_grad():
        own = model.logits(first, acts, reference=tokens).flatten(1, 2)[guessed.flatten(1, 2)].argmax(-1)
    assert torch.equal(context[guessed], own)
    assert (context[guessed] != flat[guessed]).float().mean() > 0.5  # an untrained model guesses wrong
    mask = out.mask
    assert torch.equal(second.flatten(2)[~mask], context[~mask])  # the loss pass reads the guesses
    full = model.logits(second, acts, reference=reference)[mask]
    torch.testing.assert_close(out.loss, F.cross_entropy(full, flat[mask]), rtol=1e-5, atol=1e-5)  # true targets
    # off (or in evaluation mode) there is no guessing pass
    model.eval()
    seen.clear()
    model.compute_losses(tokens, acts)
    assert len(seen) == 1 and torch.equal(seen[0][1].flatten(2), flat)
    with pytest.raises(ValueError, match="self_context"):
        DynamicsModel(16, 4, desc=(("space-time_attn", {"n_rep": 1, "n_embd": 32, "n_head": 2, "d_head": 16}),),
                      embed_dim=32, self_context=2.0)  # fmt: skip
