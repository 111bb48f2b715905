"""Video tokenizer: causality, LFQ, blueprints, the GAN step, overfitting, the seed example."""

import copy

import pytest
import torch

from genie.blueprint import BlueprintError, Stack
from genie.quantize import LFQ, _code_table, codebook_entropy
from genie.tokenizer import MAGVIT2_DEC_DESC, MAGVIT2_ENC_DESC, VideoTokenizer

# A small CoinRun-shaped tokenizer: space /4, no time down-sampling, 6 bits.
TINY_ENC = (
    ("causal", {"in_channels": 3, "out_channels": 16, "kernel_size": 3}),
    ("residual", {"in_channels": 16, "out_channels": 32, "downsample": (1, 2), "use_blur": True}),
    ("residual", {"in_channels": 32, "downsample": (1, 2), "use_blur": True}),
    ("proj_out", {"in_channels": 32, "out_channels": 6, "num_groups": 8}),
)
TINY_DEC = (
    ("causal", {"in_channels": 6, "out_channels": 32, "kernel_size": 3}),
    ("residual", {"in_channels": 32}),
    ("spacetime_upsample", {"in_channels": 32, "out_channels": 32, "space_factor": 2}),
    ("residual", {"in_channels": 32, "out_channels": 16}),
    ("spacetime_upsample", {"in_channels": 16, "out_channels": 16, "space_factor": 2}),
    ("proj_out", {"in_channels": 16, "out_channels": 3, "num_groups": 8}),
)


def tiny(**kw) -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer(enc_desc=TINY_ENC, dec_desc=TINY_DEC, d_codebook=6, **kw)


def test_tokens_of_frame_t_ignore_later_frames():
    tok = tiny().eval()
    video = torch.rand(2, 3, 6, 16, 16) * 2 - 1
    changed = video.clone()
    changed[:, :, 3:] = torch.rand_like(changed[:, :, 3:]) * 2 - 1  # frames 3..5 replaced
    with torch.no_grad():
        a, b = tok.tokenize(video), tok.tokenize(changed)
        assert torch.equal(a.indices[:, :3], b.indices[:, :3])
        assert not torch.equal(a.indices[:, 3:], b.indices[:, 3:])  # the change is visible later
        ra, rb = tok.decode(a.codes), tok.decode(b.codes)
        assert torch.allclose(ra[:, :, :3], rb[:, :, :3], atol=1e-5)  # the decoder is causal too
        one = tok.tokenize(video[:, :, :1])  # a single prompt image tokenizes on its own
        assert torch.equal(one.indices[:, 0], a.indices[:, 0])


def test_lfq_indices_codes_round_trip_and_gradients():
    q = LFQ(in_channels=8, d_codebook=4, n_codebook=2)
    z = torch.randn(2, 8, 3, 4, 4, requires_grad=True)
    out = q(z)
    assert out.indices.shape == (2, 3, 4, 4, 2) and out.indices.max() < 16
    assert torch.equal(q.indices_to_codes(out.indices), out.codes.detach())
    (out.codes.sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # straight-through
    assert set(out.terms) == {"per_sample_entropy", "codebook_entropy", "commitment"}


def test_lfq_codebook_entropy_is_exact():
    logits = torch.randn(50, 6)
    table = _code_table(logits)  # (N, 64), rows are distributions
    assert torch.allclose(table.sum(-1), torch.ones(50), atol=1e-5)
    avg = table.mean(0)
    expected = -(avg * avg.log()).sum()
    assert torch.allclose(codebook_entropy(logits), expected, atol=1e-5)  # the split-matmul path


def _codes_used_after_training(diversity_weight: float) -> int:
    torch.manual_seed(0)
    q = LFQ(in_channels=4, d_codebook=4, entropy_weight=1.0, commit_weight=0.0, diversity_weight=diversity_weight)
    z = (torch.randn(1, 4, 1, 16, 16) * 0.1 + 0.5).requires_grad_()  # collapsed: every token on code 15
    assert q(z).indices.unique().numel() == 1
    opt = torch.optim.SGD([z], lr=2.0)
    for _ in range(200):
        opt.zero_grad()
        q(z).loss.backward()
        opt.step()
    return q(z).indices.unique().numel()


def test_lfq_diversity_term_raises_code_usage():
    # Minimising the aux loss from collapsed latents spreads tokens over the codebook, and it is
    # the (subtracted) codebook-entropy term that does it: without it nothing spreads.
    assert _codes_used_after_training(diversity_weight=1.0) >= 12
    assert _codes_used_after_training(diversity_weight=0.0) <= 2


def test_blueprint_errors_name_the_entry_and_presets_stay_intact():
    preset = copy.deepcopy(MAGVIT2_ENC_DESC)
    Stack(MAGVIT2_ENC_DESC)
    Stack(MAGVIT2_ENC_DESC)  # twice: n_rep must not be popped out of the preset
    assert MAGVIT2_ENC_DESC == preset
    with pytest.raises(BlueprintError, match=r"enc\[1\].*unknown block 'resdual'"):
        Stack((("causal", {"in_channels": 3, "out_channels": 8}), ("resdual", {"in_channels": 8})), "enc")
    with pytest.raises(
        BlueprintError, match=r"enc\[1\] \('residual'\): in_channels=16 but the previous block outputs 8"
    ):
        Stack((("causal", {"in_channels": 3, "out_channels": 8}), ("residual", {"in_channels": 16})), "enc")
    with pytest.raises(BlueprintError, match=r"enc\[0\].*kernal_size"):
        Stack((("causal", {"in_channels": 3, "kernal_size": 3}),), "enc")
    with pytest.raises(ValueError, match="does not undo"):
        no_upsampling = (
            ("causal", {"in_channels": 6, "out_channels": 16}),
            ("proj_out", {"in_channels": 16, "out_channels": 3}),
        )
        VideoTokenizer(enc_desc=TINY_ENC, dec_desc=no_upsampling, d_codebook=6)


def test_wrong_frame_size_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible"):
        tiny().tokenize(torch.zeros(1, 3, 2, 18, 16))
    with pytest.raises(ValueError, match=r"expected a video \(b, 3"):
        tiny().tokenize(torch.zeros(1, 1, 2, 16, 16))


def test_gan_step_trains_the_discriminator():
    disc = dict(inp_size=(16, 16), model_dim=16, dim_mults=(1, 2), down_step=(None, 2), num_groups=8)
    tok = tiny(disc_kwargs=disc, gan_frames_per_batch=2)
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    out = tok.compute_losses(video)
    assert "gan_g" in out.terms
    assert "gan_g" not in tok.compute_losses(video, adversarial=False).terms
    opt = torch.optim.Adam(tok.discriminator.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss, terms = tok.discriminator_loss(video, out.rec)
        loss.backward()
        assert all(p.grad is None for p in tok.encoder.parameters())  # reconstructions are detached
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first and terms["d_real"] > terms["d_fake"]


def test_tiny_clip_overfits_to_30_db():
    # Space /2 and 10 bits. The commitment term is off here: it anchors each latent to the code it
    # started on (with it, this clip stalls at 19 dB on 15 codes), which is not what this test is about:
    # that encoder, straight-through LFQ and decoder can learn a clip at all.
    torch.manual_seed(0)
    enc = (
        ("causal", {"in_channels": 3, "out_channels": 32, "kernel_size": 3}),
        ("residual", {"in_channels": 32, "downsample": (1, 2), "use_blur": True}),
        ("residual", {"in_channels": 32}),
        ("proj_out", {"in_channels": 32, "out_channels": 10, "num_groups": 8}),
    )
    dec = (
        ("causal", {"in_channels": 10, "out_channels": 32, "kernel_size": 3}),
        ("residual", {"in_channels": 32}),
        ("spacetime_upsample", {"in_channels": 32, "out_channels": 32, "space_factor": 2}),
        ("residual", {"in_channels": 32}),
        ("proj_out", {"in_channels": 32, "out_channels": 3, "num_groups": 8}),
    )
    tok = VideoTokenizer(enc_desc=enc, dec_desc=dec, d_codebook=10, lfq_commit_weight=0.0)
    t = torch.linspace(-1, 1, 16)
    y, x = torch.meshgrid(t, t, indexing="ij")
    frames = [torch.stack([y, torch.roll(x, i, dims=-1), y * x]) for i in range(4)]  # an image panning right
    video = torch.stack(frames, dim=1)[None] * 0.8  # (1 3 4 16 16)
    opt = torch.optim.Adam(tok.parameters(), lr=2e-3)
    for _ in range(300):
        opt.zero_grad()
        loss, _ = tok(video)
        loss.backward()
        opt.step()
    with torch.no_grad():
        rec = tok.decode(tok.tokenize(video).indices)
    psnr = 10 * torch.log10(4 / torch.mean((rec - video) ** 2))
    assert psnr >= 30, f"PSNR {psnr:.1f} dB"


def test_seed_readme_example_runs_as_written(monkeypatch, tmp_path):
    # Tests never download: a stand-in for the ImageNet VGG16 file in the hub cache.
    from genie.perceptual import WEIGHTS_FILE, VGG16Features

    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(VGG16Features().state_dict(), tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from genie import MAGVIT2_DEC_DESC as dec, VideoTokenizer as VT  # noqa: I001  (the README's imports)

    enc_desc = (
        ("causal", {"in_channels": 3, "out_channels": 64, "kernel_size": 3}),
        ("residual", {"in_channels": 64, "kernel_size": 3, "downsample": (1, 2), "use_causal": True, "use_blur": True}),
        ("residual", {"in_channels": 64, "out_channels": 128}),
        ("residual", {"n_rep": 2, "in_channels": 128}),
        ("residual", {"in_channels": 128, "out_channels": 256, "kernel_size": 3, "downsample": 2, "use_causal": True}),
        ("proj_out", {"in_channels": 256, "out_channels": 18, "num_groups": 8, "kernel_size": 3}),
    )
    disc_kwargs = dict(
        inp_size=(64, 64), model_dim=64, dim_mults=(1, 2, 4), down_step=(None, 2, 2), inp_channels=3, kernel_size=3,
        num_groups=8, act_fn="leaky", use_blur=True, use_attn=True, num_heads=4, dim_head=32,
    )  # fmt: skip
    tokenizer = VT(
        enc_desc=enc_desc, dec_desc=dec, disc_kwargs=disc_kwargs, d_codebook=18, n_codebook=1, lfq_bias=True,
        lfq_frac_sample=1.0, lfq_commit_weight=0.25, lfq_entropy_weight=0.1, lfq_diversity_weight=1.0,
        perceptual_model="vgg16", perc_feat_layers=("features.6", "features.13", "features.18", "features.25"),
        gan_discriminate="frames", gan_frames_per_batch=4, gan_loss_weight=1.0, perc_loss_weight=1.0,
        quant_loss_weight=1.0,
    )  # fmt: skip
    mock_video = torch.randn(1, 3, 4, 64, 64)  # the README's batch 4 x 16 frames, made smaller for CI
    tokens, idxs = tokenizer.tokenize(mock_video)
    assert tokens.shape == (1, 18, 4 // 2, 64 // 4, 64 // 4) and idxs.shape == (1, 2, 16, 16)
    rec_video = tokenizer.decode(tokens)
    assert rec_video.shape == mock_video.shape and torch.equal(tokenizer.decode(idxs), rec_video)
    loss, aux_losses = tokenizer(mock_video)
    loss.backward()
    assert {"rec", "quant", "perceptual", "gan_g"} <= set(aux_losses)
    assert MAGVIT2_DEC_DESC is dec


# --- per-frame tokenizers: FSQ, LFQ's norm, 2D-conv paths, patchify ---
def test_fsq_codebook_is_the_grid_of_levels_and_round_trips():
    from genie.quantize import FSQ

    q = FSQ(in_channels=8, levels=[8, 5, 3])
    assert q.codebook_size == 120
    every = torch.arange(120).view(1, 1, 8, 15)
    codes = q.indices_to_codes(every)  # (1 3 1 8 15)
    flat = codes.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    assert len(torch.unique(flat, dim=0)) == 120  # every index is a different code
    for i, n in enumerate([8, 5, 3]):  # n values per dimension, within [-1, 1]
        assert len(flat[:, i].unique()) == n and flat[:, i].abs().max() <= 1
    z = (torch.randn(2, 8, 3, 4, 4) * 3).requires_grad_()
    out = q(z)
    assert out.indices.shape == (2, 3, 4, 4) and 0 <= out.indices.min() and out.indices.max() < 120
    assert torch.allclose(q.indices_to_codes(out.indices), out.codes.detach())
    out.codes.sum().backward()
    assert z.grad.abs().sum() > 0 and out.loss == 0 and out.terms == {}  # straight-through, no auxiliary loss


def test_lfq_norm_keeps_the_codes_and_puts_z_at_their_scale():
    torch.manual_seed(0)
    plain, normed = LFQ(10, 10), LFQ(10, 10, norm=True)
    z = torch.randn(2, 10, 1, 4, 4) * 30  # a large encoder output
    a, b = plain(z), normed(z)
    assert torch.equal(a.indices, b.indices)  # the norm keeps every sign
    assert a.terms["commitment"] > 100 and b.terms["commitment"] < 1


def test_per_frame_kernels_run_as_2d_convs_with_the_same_output():
    from genie.blocks import CausalConv3d, PointwiseConv3d

    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 8, 8)
    for conv in (CausalConv3d(5, 7, (1, 3, 3)), PointwiseConv3d(5, 7)):
        inner = conv.conv if isinstance(conv, CausalConv3d) else conv
        expected = torch.nn.functional.conv3d(x, inner.weight, inner.bias, 1, inner.padding)
        assert torch.allclose(conv(x), expected, atol=1e-5)


def test_patchify_tokenizer_with_fsq_is_causal_and_learns_a_frame():
    torch.manual_seed(0)
    k = (1, 3, 3)
    enc = (
        ("patchify", {"in_channels": 3, "out_channels": 32, "patch_size": 4}),
        ("residual", {"in_channels": 32, "kernel_size": k}),
        ("proj_out", {"in_channels": 32, "out_channels": 4, "kernel_size": k}),
    )
    dec = (
        ("causal", {"in_channels": 4, "out_channels": 32, "kernel_size": k}),
        ("residual", {"in_channels": 32, "kernel_size": k}),
        ("spacetime_upsample", {"in_channels": 32, "out_channels": 8, "space_factor": 4, "kernel_size": k}),
        ("proj_out", {"in_channels": 8, "out_channels": 3, "num_groups": 4, "kernel_size": k}),
    )
    tok = VideoTokenizer(enc_desc=enc, dec_desc=dec, quantizer="fsq", fsq_levels=[8, 5, 5, 5])
    assert tok.codebook_size == 1000 and tok.downsampling == (1, 4)
    video = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    with torch.no_grad():  # per-frame blocks: each frame's tokens are its own
        whole, alone = tok.tokenize(video).indices, tok.tokenize(video[:, :, 1:2]).indices
    assert whole.shape == (1, 3, 4, 4) and torch.equal(whole[:, 1:2], alone)
    t = torch.linspace(-1, 1, 16)
    y, x = torch.meshgrid(t, t, indexing="ij")
    frame = torch.stack([y, x, y * x])[None, :, None] * 0.8  # (1 3 1 16 16), smooth: learnable at /4
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss, _ = tok(frame)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 10, (first, loss.item())


def test_quantizer_choice_is_checked():
    with pytest.raises(ValueError, match="fsq_levels"):
        VideoTokenizer(enc_desc=TINY_ENC, dec_desc=TINY_DEC, quantizer="fsq")
    with pytest.raises(ValueError, match="'lfq' or 'fsq'"):
        VideoTokenizer(enc_desc=TINY_ENC, dec_desc=TINY_DEC, d_codebook=6, quantizer="vq")
