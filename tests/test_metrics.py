"""Tests for genie.metrics: PSNR, SSIM, codebook usage and NMI on small synthetic tensors."""

import math

import numpy as np
import pytest
import torch

from genie.metrics import (
    PSNR_CAP,
    CodebookCounter,
    codebook_usage,
    mean_psnr,
    normalized_mutual_info,
    psnr,
    ssim,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _video(*shape, seed=0, low=-1.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * (high - low) + low


def _noise(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------


def test_psnr_identical_is_inf_and_mean_is_cap():
    x = _video(2, 3, 4, 8, 8)
    per_frame = psnr(x, x.clone())
    assert per_frame.shape == (2, 4)
    assert torch.isinf(per_frame).all() and (per_frame > 0).all()
    assert not torch.isnan(per_frame).any()
    m = mean_psnr(x, x.clone())
    assert m.ndim == 0 and torch.isfinite(m)
    assert m.item() == pytest.approx(PSNR_CAP)


def test_psnr_known_noise_level():
    sigma, data_range = 0.01, 2.0
    x = torch.zeros(1, 3, 2, 64, 64)  # mid-grey: x + noise never leaves [-1, 1], no clamping needed
    y = x + sigma * _noise(*x.shape)
    expected = 10 * math.log10(data_range**2 / sigma**2)
    per_frame = psnr(x, y, data_range)
    assert torch.allclose(per_frame, torch.full_like(per_frame, expected), atol=0.2)
    assert mean_psnr(x, y, data_range).item() == pytest.approx(expected, abs=0.2)


def test_psnr_per_frame_localises_corruption():
    x = _video(2, 3, 4, 16, 16)
    y = x.clone()
    y[1, :, 2] += 0.1 * _noise(3, 16, 16)
    per_frame = psnr(x, y)
    assert per_frame.shape == (2, 4)
    corrupted = torch.zeros(2, 4, dtype=torch.bool)
    corrupted[1, 2] = True
    assert torch.isfinite(per_frame[corrupted]).all()
    assert torch.isinf(per_frame[~corrupted]).all()
    # mean_psnr averages capped per-frame values
    expected = (PSNR_CAP * 7 + per_frame[1, 2].item()) / 8
    assert mean_psnr(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_psnr_half_precision_inputs():
    x = _video(1, 3, 2, 16, 16)
    y = x + 0.05 * _noise(*x.shape)
    ref = psnr(x, y)
    out = psnr(x.bfloat16(), y.bfloat16())
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=0.5)
    assert ssim(x.half(), y.half()).dtype == torch.float32


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        psnr(torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 2, 8, 9))
    with pytest.raises(ValueError):
        ssim(torch.zeros(3, 2, 8, 8), torch.zeros(3, 2, 8, 8))


# --------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float, win: int = 11, sigma: float = 1.5) -> float:
    """Plain numpy SSIM of one frame `(c, h, w)`: explicit windows, no convolution routines."""
    r = np.arange(win) - (win - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    kernel = np.outer(g, g)
    kernel /= kernel.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for xc, yc in zip(x.astype(np.float64), y.astype(np.float64)):
        xs = np.lib.stride_tricks.sliding_window_view(xc, (win, win))  # (h-win+1, w-win+1, win, win)
        ys = np.lib.stride_tricks.sliding_window_view(yc, (win, win))
        mx = (xs * kernel).sum(axis=(-2, -1))
        my = (ys * kernel).sum(axis=(-2, -1))
        vx = ((xs - mx[..., None, None]) ** 2 * kernel).sum(axis=(-2, -1))
        vy = ((ys - my[..., None, None]) ** 2 * kernel).sum(axis=(-2, -1))
        cxy = ((xs - mx[..., None, None]) * (ys - my[..., None, None]) * kernel).sum(axis=(-2, -1))
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(s.mean())
    return float(np.mean(values))


def test_ssim_identical_is_one():
    x = _video(2, 3, 3, 24, 20)
    s = ssim(x, x.clone())
    assert s.shape == (2, 3)
    assert torch.allclose(s, torch.ones_like(s), atol=1e-5)


def test_ssim_decreases_with_noise():
    x = _video(1, 3, 2, 32, 32, low=-0.5, high=0.5)
    n = _noise(*x.shape)
    values = [ssim(x, x + sigma * n).mean().item() for sigma in (0.0, 0.01, 0.05, 0.1, 0.2, 0.4)]
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_ssim_symmetric():
    x = _video(2, 3, 2, 20, 20, seed=3)
    y = _video(2, 3, 2, 20, 20, seed=4)
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-6)


@pytest.mark.parametrize("size", [(32, 28), (8, 12)])  # (8, 12): smaller than the window, uses 7x7
def test_ssim_matches_numpy_reference(size):
    h, w = size
    x = _video(2, 3, 2, h, w, seed=5)
    y = (x + 0.3 * _noise(*x.shape, seed=6)).clamp(-1, 1)
    out = ssim(x.double(), y.double())
    win = min(11, h, w)
    win -= 1 - win % 2
    xn, yn = x.numpy(), y.numpy()
    ref = np.array([[_ssim_reference(xn[i, :, j], yn[i, :, j], 2.0, win) for j in range(2)] for i in range(2)])
    assert np.allclose(out.numpy(), ref, atol=1e-4)
    # fp32 computation agrees too
    assert np.allclose(ssim(x, y).numpy(), ref, atol=1e-4)


def test_ssim_per_frame_localises_corruption():
    x = _video(2, 3, 4, 16, 16)
    y = x.clone()
    y[1, :, 2] += 0.2 * _noise(3, 16, 16)
    s = ssim(x, y)
    assert s[1, 2] < 0.99
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2] = False
    assert torch.allclose(s[mask], torch.ones(7), atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_metrics_run_on_device(device):
    x = _video(1, 3, 2, 16, 16).to(device)
    y = (x + 0.1 * _noise(*x.shape).to(device)).clamp(-1, 1)
    with torch.no_grad():
        assert psnr(x, y).device.type == device
        assert ssim(x, y).device.type == device
        assert codebook_usage(torch.arange(4, device=device), 8).counts.device.type == device
        assert normalized_mutual_info(torch.arange(4, device=device), torch.arange(4, device=device)).item() == 1.0


# --------------------------------------------------------------------------------------
# Codebook usage
# --------------------------------------------------------------------------------------


def test_codebook_usage_known_counts():
    indices = torch.tensor([0, 2, 5, 7] * 6).reshape(2, 3, 4)  # 4 of 8 codes, uniformly
    usage = codebook_usage(indices, 8)
    assert usage.fraction_used.item() == pytest.approx(0.5)
    assert usage.perplexity.item() == pytest.approx(4.0, rel=1e-6)
    assert usage.counts.dtype == torch.long and usage.counts.shape == (8,)
    assert usage.counts.tolist() == [6, 0, 6, 0, 0, 6, 0, 6]


def test_codebook_usage_single_code_and_skewed():
    assert codebook_usage(torch.full((10,), 3), 16).perplexity.item() == pytest.approx(1.0)
    usage = codebook_usage(torch.tensor([0, 0, 0, 1]), 4)
    p = np.array([0.75, 0.25])
    assert usage.perplexity.item() == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-6)
    assert usage.fraction_used.item() == pytest.approx(0.5)


def test_codebook_usage_rejects_bad_indices():
    with pytest.raises(ValueError):
        codebook_usage(torch.tensor([0, 8]), 8)
    with pytest.raises(ValueError):
        codebook_usage(torch.tensor([-1, 2]), 8)
    with pytest.raises(ValueError):
        codebook_usage(torch.tensor([0.0, 1.0]), 8)
    with pytest.raises(ValueError):
        CodebookCounter(8).update(torch.tensor([9]))


def test_codebook_counter_accumulates_like_one_shot():
    g = torch.Generator().manual_seed(0)
    first = torch.randint(0, 10, (4, 5, 5), generator=g)
    second = torch.randint(3, 16, (3, 7), generator=g)
    counter = CodebookCounter(16)
    counter.update(first)
    counter.update(second)
    acc = counter.compute()
    one = codebook_usage(torch.cat([first.flatten(), second.flatten()]), 16)
    assert torch.equal(acc.counts, one.counts)
    assert acc.counts.dtype == torch.long
    assert acc.fraction_used.item() == pytest.approx(one.fraction_used.item())
    assert acc.perplexity.item() == pytest.approx(one.perplexity.item())

    counter.reset()
    empty = counter.compute()
    assert empty.counts.sum().item() == 0
    assert empty.fraction_used.item() == 0.0 and empty.perplexity.item() == 0.0
    counter.update(first)
    assert torch.equal(counter.compute().counts, codebook_usage(first, 16).counts)


# --------------------------------------------------------------------------------------
# Normalized mutual information
# --------------------------------------------------------------------------------------


def test_nmi_permuted_relabeling_is_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (1000,), generator=g)
    perm = torch.tensor([40, -3, 7, 12, 0, 99])  # arbitrary, non-contiguous label values
    assert normalized_mutual_info(a, perm[a]).item() == pytest.approx(1.0, abs=1e-6)


def test_nmi_independent_is_near_zero():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 15, (20000,), generator=g)
    b = torch.randint(0, 8, (20000,), generator=g)
    nmi = normalized_mutual_info(a, b).item()
    assert 0.0 <= nmi < 0.05


def test_nmi_symmetric_and_matches_direct_formula():
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 5, (500,), generator=g)
    b = (a + torch.randint(0, 3, (500,), generator=g)) % 7  # partially dependent
    ab, ba = normalized_mutual_info(a, b).item(), normalized_mutual_info(b, a).item()
    assert ab == pytest.approx(ba, abs=1e-6)
    # direct evaluation from the definition
    an, bn = a.numpy(), b.numpy()
    joint = np.zeros((5, 7))
    np.add.at(joint, (an, bn), 1)
    p = joint / joint.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
    ha = -(pa[pa > 0] * np.log(pa[pa > 0])).sum()
    hb = -(pb[pb > 0] * np.log(pb[pb > 0])).sum()
    assert ab == pytest.approx(mi / ((ha + hb) / 2), abs=1e-6)
    assert 0.0 < ab < 1.0


def test_nmi_constant_labelings():
    const = torch.full((50,), 3)
    assert normalized_mutual_info(const, torch.zeros(50, dtype=torch.long)).item() == 1.0
    varied = torch.arange(50) % 4
    assert normalized_mutual_info(const, varied).item() == 0.0
    assert normalized_mutual_info(varied, const).item() == 0.0


def test_nmi_rejects_bad_input():
    with pytest.raises(ValueError):
        normalized_mutual_info(torch.arange(3), torch.arange(4))
    with pytest.raises(ValueError):
        normalized_mutual_info(torch.zeros(3), torch.zeros(3))


def test_contingency_table_counts_pairs_and_clamps_unknown_labels():
    from genie.metrics import contingency_table

    a = torch.tensor([[0, 1, 1], [2, 2, 0]])
    b = torch.tensor([[3, 0, 0], [1, 9, 3]])  # 9 is beyond the 4 columns: counted in the last
    table = contingency_table(a, b, 3, 4)
    assert table.tolist() == [[0, 0, 0, 2], [2, 0, 0, 0], [0, 1, 0, 1]]


def test_count_ids_matches_bincount_with_a_fixed_size():
    from genie.metrics import count_ids

    ids = torch.randint(0, 7, (3, 5, 4))
    counts = count_ids(ids, 10)
    assert counts.shape == (10,) and counts.dtype == torch.long
    assert torch.equal(counts, torch.bincount(ids.flatten(), minlength=10))
    assert counts[7:].sum() == 0 and counts.sum() == ids.numel()
