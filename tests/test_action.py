"""LatentAction, its codebook and the conditioned ST block: the seed example, causality, the
action bottleneck, exactly num_actions codes, and dead-code restarts."""

from pathlib import Path

import pytest
import torch
from einops import rearrange

from genie.action import LATENT_ACT_DEC, LatentAction
from genie.attention import SpaceTimeBlock
from genie.blueprint import Stack
from genie.media import load_image
from genie.motion import closest_shift, move
from genie.vq import VectorQuantizer


def small_lam(**kw):
    st = {"n_embd": 32, "n_head": 2, "d_head": 16}
    args = dict(
        enc_desc=(("space-time_attn", {"n_rep": 2, **st}),),
        dec_desc=(("space-time_attn", {"n_rep": 2, **st, "has_ext": True, "time_attn_kw": {"key_dim": 4}}),),
        d_codebook=4, num_actions=3, inp_shape=(16, 16), n_embd=32, patch_size=4, max_frames=8,
    )  # fmt: skip
    torch.manual_seed(0)
    return LatentAction(**{**args, **kw})


def test_seed_readme_example_runs_as_written():
    from genie import LATENT_ACT_ENC, LatentAction

    model = LatentAction(
        enc_desc=LATENT_ACT_ENC,
        dec_desc=(
            (
                "space-time_attn",
                {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16, "has_ext": True, "time_attn_kw": {"key_dim": 8}},
            ),
            ("spacetime_upsample", {"in_channels": 256, "kernel_size": 3, "time_factor": 1, "space_factor": 2}),
            (
                "space-time_attn",
                {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16, "has_ext": True, "time_attn_kw": {"key_dim": 8}},
            ),
        ),  # fmt: skip
        d_codebook=8,
        inp_channels=3,
        inp_shape=(64, 64),
        n_embd=256,
    )
    batch_size, video_len, frame_dim = 2, 16, (64, 64)
    video = torch.randn(batch_size, 3, video_len, *frame_dim)
    (actions, encoded), quant_loss = model.encode(video)
    assert actions.shape == (batch_size, video_len - 1) and encoded.shape == (batch_size, video_len - 1, 8)
    assert actions.max() < 6 and model.quantizer.codebook.shape == (6, 8)  # 6 actions, not 2**8
    recon, loss, aux_losses = model(video)
    assert recon.shape == (batch_size, 3, video_len, *frame_dim)
    loss.backward()
    assert {"rec", "quant", "codebook", "commit"} <= set(aux_losses)
    assert model.encoder.layers[0].time.qkv.weight.grad is not None  # the encoder learns through the actions


def test_conditioned_st_block_is_causal_in_frames_and_actions():
    torch.manual_seed(0)
    stack = Stack((("space-time_attn", {"n_rep": 2, "n_embd": 16, "n_head": 2, "d_head": 8, "has_ext": True,
                                        "time_attn_kw": {"key_dim": 3}}),))  # fmt: skip
    x, ext = torch.randn(2, 16, 6, 3, 3), torch.randn(2, 6, 3)
    x2, ext2 = x.clone(), ext.clone()
    x2[:, :, 4:] += 1.0
    ext2[:, 4:] += 1.0
    y, y2 = stack(x, ext), stack(x2, ext2)
    torch.testing.assert_close(y[:, :, :4], y2[:, :, :4])
    assert not torch.allclose(y[:, :, 4:], y2[:, :, 4:])
    with pytest.raises(ValueError, match="has_ext"):
        stack(x)
    with pytest.raises(TypeError, match="key_dim"):
        SpaceTimeBlock(16, 2, 8, has_ext=True, time_attn_kw={"kee_dim": 3})


def test_action_t_sees_frames_up_to_t_plus_1_only():
    lam = small_lam().eval()
    video = torch.rand(2, 3, 6, 16, 16) * 2 - 1
    changed = video.clone()
    changed[:, :, 4:] = -changed[:, :, 4:]
    with torch.no_grad():
        feats, feats2 = lam._encode(video)[0], lam._encode(changed)[0]  # (b e T h w); a_t is read at t+1
    torch.testing.assert_close(feats[:, :, :4], feats2[:, :, :4])  # a_0..a_2 see frames <= 3
    assert not torch.allclose(feats[:, :, 4:], feats2[:, :, 4:])


@pytest.mark.parametrize("readout", ["mean", "grid"])
def test_action_vector_t_is_read_from_frames_up_to_t_plus_1(readout):
    lam = small_lam(action_readout=readout).eval()
    video = torch.rand(2, 3, 6, 16, 16) * 2 - 1
    changed = video.clone()
    changed[:, :, 4:] = -changed[:, :, 4:]
    with torch.no_grad():
        z, z2 = lam.action_features(video), lam.action_features(changed)  # (b T-1 d)
    assert z.shape == (2, 5, 4)
    torch.testing.assert_close(z[:, :3], z2[:, :3])  # z_0..z_2 see frames <= 3
    assert not torch.allclose(z[:, 3:], z2[:, 3:])


def test_a_grid_readout_tells_where_the_features_are():
    """With the encoder's features moved to other positions of the grid, the mean over space
    reads the same action vector and the grid readout does not."""
    class Flip(torch.nn.Module):  # an encoder that returns its input, mirrored left to right
        def forward(self, x):
            return x.flip(-1)

    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    for readout, tells in (("mean", False), ("grid", True)):
        lam = small_lam(action_readout=readout).eval()
        with torch.no_grad():
            lam.encoder = torch.nn.Identity()
            z = lam.action_features(video)
            lam.encoder = Flip()
            z_flipped = lam.action_features(video)
        assert tells == (not torch.allclose(z, z_flipped, atol=1e-5)), readout
    with pytest.raises(ValueError, match="action_readout"):
        small_lam(action_readout="max")


def test_a_frame_context_decoder_sees_frame_t_alone():
    """`decoder_context="frame"`: frame t+1 is predicted from frame t and a_t only, so changing
    an earlier frame leaves it alone, while `history` lets earlier frames in."""
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    actions = torch.randint(0, 3, (2, 4))
    earlier = video.clone()
    earlier[:, :, 1] = -earlier[:, :, 1]  # only frame 1 differs
    for context, leaks in (("frame", False), ("history", True)):
        lam = small_lam(predict_delta=False, decoder_context=context).eval()
        with torch.no_grad():
            a, b = lam.decode(video, actions), lam.decode(earlier, actions)
        assert leaks == (not torch.allclose(a[:, :, 4], b[:, :, 4]))  # frame 4 from frame 3 (and a_3)
        assert not torch.allclose(a[:, :, 2], b[:, :, 2])  # frame 2 is predicted from frame 1 itself
    with pytest.raises(ValueError, match="decoder_context"):
        small_lam(decoder_context="past")


def test_decoder_predicts_frame_t_plus_1_from_frames_up_to_t_and_a_t():
    """The bottleneck: with actions fixed, frame t+1 of the video cannot reach the
    prediction of frame t+1; only the action carries it."""
    lam = small_lam(predict_delta=False).eval()
    video = torch.rand(2, 3, 6, 16, 16) * 2 - 1
    actions = torch.randint(0, 3, (2, 5))
    changed = video.clone()
    changed[:, :, 3:] = -changed[:, :, 3:]
    with torch.no_grad():
        rec, rec2 = lam.decode(video, actions), lam.decode(changed, actions)
        other = actions.clone()
        other[:, 2] = (actions[:, 2] + 1) % 3
        rec3 = lam.decode(video, other)
    torch.testing.assert_close(rec[:, :, :4], rec2[:, :, :4])  # frames 0..3 predicted from frames <= 2
    torch.testing.assert_close(rec[:, :, :3], rec3[:, :, :3])  # a_2 only changes frame 3 on
    assert not torch.allclose(rec[:, :, 3], rec3[:, :, 3])


def test_lam_losses_fall_on_a_tiny_video():
    lam = small_lam()
    video = torch.rand(4, 3, 4, 16, 16) * 2 - 1
    opt = torch.optim.AdamW(lam.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = lam.compute_losses(video)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.terms["rec"].item())
    assert losses[-1] < 0.5 * losses[0]


def test_bad_blueprints_and_inputs_are_clear_errors():
    st = {"n_embd": 32, "n_head": 2, "d_head": 16}
    with pytest.raises(ValueError, match="has_ext"):
        small_lam(dec_desc=(("space-time_attn", st),))
    with pytest.raises(ValueError, match="d_codebook"):
        small_lam(d_codebook=5)
    with pytest.raises(ValueError, match="does not undo"):  # the seed decoder up-samples; this encoder does not
        small_lam(enc_desc=LATENT_ACT_DEC[:1], dec_desc=LATENT_ACT_DEC, d_codebook=8, n_embd=256)
    with pytest.raises(ValueError, match="patch_size"):
        small_lam(patch_size=5)
    lam = small_lam()
    with pytest.raises(ValueError, match="expected a video"):
        lam(torch.zeros(1, 3, 4, 32, 32))
    with pytest.raises(ValueError, match="max_frames"):
        lam(torch.zeros(1, 3, 9, 16, 16))


def test_codebook_has_exactly_num_actions_codes_and_restarts_dead_ones():
    torch.manual_seed(0)
    centers = torch.randn(6, 4) * 5
    data = centers.repeat_interleave(20, 0) + 0.1 * torch.randn(120, 4)  # six clusters
    for dead_fraction, expected in ((0.1, 6), (0.0, 1)):
        vq = VectorQuantizer(6, 4, dead_fraction=dead_fraction)
        vq.train()
        vq(data)  # the first training batch initialises the codebook from the data...
        with torch.no_grad():  # ...then collapse it by hand: one code near the data, five far away
            vq.codebook.copy_(torch.cat([data.mean(0, keepdim=True), torch.full((5, 4), 100.0)]))
        for _ in range(600):
            out = vq(data)
        used = out.indices.unique().numel()
        assert out.indices.max() < 6 and vq.codebook.shape == (6, 4)
        assert (used >= 5) if expected == 6 else (used == 1), (dead_fraction, used)
        # the counter logged as the restart count: the five unused codes at least, or none at all
        assert (int(vq.restarts) >= 5) if expected == 6 else (int(vq.restarts) == 0), int(vq.restarts)


@pytest.mark.parametrize("readout", ["mean", "grid"])
def test_lam_checkpoint_config_rebuilds_the_same_network(readout):
    lam = small_lam(action_readout=readout).eval()
    twin = LatentAction(**lam.config).eval()
    twin.load_state_dict(lam.state_dict())
    video = torch.rand(1, 3, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(lam.encode(video)[0].actions, twin.encode(video)[0].actions)



def scrolling_clips(n: int, generator: torch.Generator, moves=((-2, 0), (2, 0), (0, 2))) -> torch.Tensor:
    """Clips `(n 3 4 16 16)`: a 16x16 window on a CoinRun frame, from a random place, moved at each
    step by one of `moves` (dx, dy), drawn per step: what the motion head must read off the frames."""
    frame = load_image(Path(__file__).resolve().parents[1] / "res" / "example.png", (32, 32)).expand(n, -1, -1, -1)
    place = torch.randint(-8, 9, (n, 2), generator=generator)
    frames = []
    for step in range(4):
        if step:
            place = place + torch.tensor(moves)[torch.randint(len(moves), (n,), generator=generator)]
        frames.append(move(frame, place)[..., 8:24, 8:24])
    return torch.stack(frames, dim=2)


def test_a_motion_head_sorts_the_action_codes_by_the_scene_shift():
    assert "motion" not in small_lam().compute_losses(torch.zeros(1, 3, 2, 16, 16)).terms  # off by default
    lam = small_lam(motion_shift=3, motion_weight=1.0)
    lam.quantizer.usage_decay = 0.8  # restart unused codes within this short run
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(lam.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        out = lam.compute_losses(scrolling_clips(16, g))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else out.terms["motion"].item()
    lam.eval()
    with torch.no_grad():
        held = lam.compute_losses(scrolling_clips(32, g))
    assert held.terms["motion"].item() < 0.3 * first
    # the head reads only the quantized vector, one of 3 codes: right shifts mean the codes tell the 3 moves apart
    assert held.terms["motion_acc"].item() > 0.9
    assert len(held.actions.unique()) == 3


def test_the_motion_head_reads_shifts_measured_elsewhere_as_its_own():
    """The training step measures a clip's shifts once for the LAM and the scroll dynamics: passed in,
    they must give the loss the LAM measures itself, and other shifts another loss."""
    lam = small_lam(motion_shift=3).eval()
    video = scrolling_clips(4, torch.Generator().manual_seed(1))
    frames = rearrange(video, "b c t h w -> b t c h w")
    shifts = closest_shift(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1), 3).reshape(4, 3, 2)
    with torch.no_grad():
        own = lam.compute_losses(video).terms["motion"]
        given = lam.compute_losses(video, shifts).terms["motion"]
        other = lam.compute_losses(video, (shifts + 1).clamp(-3, 3)).terms["motion"]
    torch.testing.assert_close(given, own)
    assert not torch.allclose(other, own)
