"""Perceptual loss: torchvision-compatible VGG16 names, weight resolution, and loss behaviour.

The real ImageNet file is never needed: a randomly initialised VGG16Features saved in
torchvision's layout (plus fake classifier keys) stands in for it, and the network is
patched out so no test can download anything.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest
import torch

from genie.perceptual import (
    WEIGHTS_FILE,
    WEIGHTS_URL,
    PerceptualLoss,
    PerceptualWeightsMissing,
    VGG16Features,
    hub_weights_path,
    load_vgg16_weights,
)

# sorted(k for k in torchvision.models.vgg16().state_dict() if k.startswith("features."))
TORCHVISION_VGG16_FEATURE_KEYS = sorted(
    f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) for p in ("weight", "bias")
)
SIZE = 64


def _offline(*args, **kwargs):
    raise urllib.error.URLError("offline (patched by test)")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)


@pytest.fixture(scope="module")
def fake_state() -> dict[str, torch.Tensor]:
    """A full torchvision-style vgg16 state dict: our features (seeded) plus classifier keys we must ignore."""
    torch.manual_seed(0)
    state = dict(VGG16Features().state_dict())
    state["classifier.0.weight"] = torch.randn(8, 4)
    state["classifier.0.bias"] = torch.randn(8)
    state["classifier.6.weight"] = torch.randn(2, 8)
    return state


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory, fake_state) -> Path:
    """A TORCH_HOME whose hub cache holds the stand-in weights file."""
    home = tmp_path_factory.mktemp("torch_home")
    # torch.hub.get_dir() is $TORCH_HOME/hub, so the cache lives at $TORCH_HOME/hub/checkpoints
    ckpt = home / "hub" / "checkpoints" / WEIGHTS_FILE
    ckpt.parent.mkdir(parents=True)
    torch.save(fake_state, ckpt)
    return home


@pytest.fixture
def cached(monkeypatch, torch_home) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return torch_home


@pytest.fixture(scope="module")
def loss_fn(torch_home) -> PerceptualLoss:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(torch_home))
        mp.setattr(torch.hub, "load_state_dict_from_url", _offline)
        return PerceptualLoss()


def _images(seed: int = 0, n: int = 2) -> torch.Tensor:
    """Smooth-ish images in [-1, 1] (upsampled noise), like frames rather than pure static."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, SIZE // 8, SIZE // 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def test_parameter_names_match_torchvision():
    model = VGG16Features()
    assert sorted(name for name, _ in model.named_parameters()) == TORCHVISION_VGG16_FEATURE_KEYS
    assert len(model.features) == 31
    assert isinstance(model.features[4], torch.nn.MaxPool2d) and isinstance(model.features[30], torch.nn.MaxPool2d)
    assert not any(getattr(m, "inplace", False) for m in model.features)


def test_hub_path_follows_torch_home(cached):
    expected = cached / "hub" / "checkpoints" / WEIGHTS_FILE
    assert Path(hub_weights_path()) == expected
    assert expected.is_file()


def test_loads_from_hub_cache_exactly(cached, fake_state):
    model = load_vgg16_weights(VGG16Features())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, fake_state[name]), name


def test_explicit_path(tmp_path, monkeypatch, fake_state):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))  # nothing cached: the path must be used
    path = tmp_path / "my_vgg.pth"
    torch.save(fake_state, path)
    model = load_vgg16_weights(VGG16Features(), str(path))
    assert torch.equal(model.features[28].weight, fake_state["features.28.weight"])
    loss = PerceptualLoss(weights_path=str(path))
    assert torch.equal(loss.vgg.features[0].bias, fake_state["features.0.bias"])


def test_explicit_path_missing(tmp_path, cached):
    path = tmp_path / "nope.pth"
    with pytest.raises(PerceptualWeightsMissing, match="nope.pth"):
        load_vgg16_weights(VGG16Features(), str(path))


def test_missing_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(PerceptualWeightsMissing) as info:
        PerceptualLoss()
    message = str(info.value)
    assert os.path.join(str(tmp_path / "empty_home"), "hub", "checkpoints", WEIGHTS_FILE) in message
    assert WEIGHTS_URL in message and "perceptual_weights" in message
    assert isinstance(info.value, FileNotFoundError)


def test_download_used_when_online(tmp_path, monkeypatch, fake_state):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    urls = []

    def fake_download(url, **kwargs):
        urls.append(url)
        return fake_state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    model = load_vgg16_weights(VGG16Features())
    assert urls == [WEIGHTS_URL]
    assert torch.equal(model.features[0].weight, fake_state["features.0.weight"])


def test_mismatched_file(tmp_path, fake_state):
    wrong_shape = dict(fake_state)
    wrong_shape["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(wrong_shape, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"features\.0\.weight"):
        load_vgg16_weights(VGG16Features(), str(tmp_path / "shape.pth"))

    missing_key = {k: v for k, v in fake_state.items() if k != "features.28.bias"}
    torch.save(missing_key, tmp_path / "keys.pth")
    with pytest.raises(ValueError, match=r"features\.28\.bias"):
        load_vgg16_weights(VGG16Features(), str(tmp_path / "keys.pth"))

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_vgg16_weights(VGG16Features(), str(tmp_path / "junk.pth"))


def test_identical_inputs_give_zero(loss_fn):
    x = _images()
    assert loss_fn(x, x.clone()).item() == 0.0


def test_loss_grows_with_noise(loss_fn):
    x = _images()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    small = loss_fn((x + 0.05 * noise).clamp(-1, 1), x)
    large = loss_fn((x + 0.5 * noise).clamp(-1, 1), x)
    assert small.ndim == 0
    assert 0 < small < large


def test_gradient_reaches_input_not_vgg(loss_fn):
    target = _images(0)
    x = _images(1).requires_grad_(True)
    loss = loss_fn(x, target)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss_fn.parameters())


def test_video_input_folds_time(loss_fn):
    b, t = 2, 3
    frames = _images(0, n=b * t)
    other = _images(1, n=b * t)
    video = frames.view(b, t, 3, SIZE, SIZE).transpose(1, 2)  # (b, c, t, h, w)
    other_video = other.view(b, t, 3, SIZE, SIZE).transpose(1, 2)
    assert torch.allclose(loss_fn(video, other_video), loss_fn(frames, other), rtol=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        loss_fn(video, frames)


def test_train_keeps_eval(loss_fn):
    parent = torch.nn.ModuleDict({"perc": loss_fn, "head": torch.nn.Linear(2, 2)})
    parent.train()
    assert parent["head"].training
    assert not loss_fn.training and not any(m.training for m in loss_fn.vgg.modules())


def test_unknown_layer_and_model(cached):
    with pytest.raises(ValueError, match="features.29"):  # the message lists the valid names
        PerceptualLoss(feat_layers=("features.6", "features.99"))
    with pytest.raises(ValueError, match="vgg16"):
        PerceptualLoss(model="alexnet")


def test_features_stop_at_deepest_layer(loss_fn):
    x = _images()
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, m in enumerate(loss_fn.vgg.features)]
    try:
        out = loss_fn.vgg(x, ("features.8", "features.3"))
    finally:
        for h in hooks:
            h.remove()
    assert calls == list(range(9))
    assert [tuple(o.shape) for o in out] == [(2, 128, SIZE // 2, SIZE // 2), (2, 64, SIZE, SIZE)]


@pytest.fixture(scope="module")
def hand_loss(tmp_path_factory) -> PerceptualLoss:
    """A VGG whose first two convolutions are hand-set (every other weight 0), so the features are known:
    features.1 = relu of the ImageNet-normalised RGB in channels 0..2 (0 in the other 61 channels),
    features.3 = relu(channel 0 + channel 1 of features.1) in channel 0 (0 elsewhere)."""
    state = {k: torch.zeros_like(v) for k, v in VGG16Features().state_dict().items()}
    for c in range(3):
        state["features.0.weight"][c, c, 1, 1] = 1.0  # centre taps only: no mixing across pixels
    state["features.2.weight"][0, 0, 1, 1] = state["features.2.weight"][0, 1, 1, 1] = 1.0
    path = tmp_path_factory.mktemp("hand") / "vgg.pth"
    torch.save(state, path)
    return PerceptualLoss(feat_layers=("features.1", "features.3"), weights_path=str(path))


def _flat(r: float, g: float, b: float, size: int = 8) -> torch.Tensor:
    """One image of constant colour, channels in [-1, 1]."""
    return torch.tensor([r, g, b], dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size).clone()


def test_loss_by_hand_on_known_features(hand_loss):
    """Red (+1, -1, -1) and green (-1, +1, -1): after the ImageNet normalisation a channel at +1 is
    positive and one at -1 negative, so features.1 is (a, 0, 0, ...) for red and (0, b, 0, ...) for
    green: unit vectors e0 and e1 after the channel normalisation, |e0 - e1|^2 = 2 at every pixel,
    averaged over 64 channels: 2/64. features.3 is (a, 0, ...) and (b, 0, ...): both e0, loss 0.
    The loss is the mean over the two layers: (2/64 + 0) / 2 = 1/64."""
    red, green = _flat(1, -1, -1), _flat(-1, 1, -1)
    assert hand_loss(red, green).item() == pytest.approx(1 / 64, rel=1e-5)
    assert hand_loss(green, red).item() == pytest.approx(1 / 64, rel=1e-5)
    # the feature scale does not count, only the direction: a darker red is still e0
    assert hand_loss(_flat(0.5, -1, -1), green).item() == pytest.approx(1 / 64, rel=1e-5)
    assert hand_loss(_flat(0.5, -1, -1), red).item() == pytest.approx(0.0, abs=1e-7)
    # a mean over pixels: green on the left half only differs from red there
    half = red.clone()
    half[..., :4] = green[..., :4]
    assert hand_loss(half, red).item() == pytest.approx(1 / 128, rel=1e-5)


def test_all_zero_features_give_a_finite_loss(hand_loss):
    """Black (-1, -1, -1) is negative in every channel after normalisation: every feature is 0,
    its unit vector is 0 (not 0/0), and the loss to red is |e0|^2 / 64 in both layers."""
    black, red = _flat(-1, -1, -1), _flat(1, -1, -1)
    assert hand_loss(black, black).item() == 0.0
    assert hand_loss(black, red).item() == pytest.approx(1 / 64, rel=1e-5)
    x = black.clone().requires_grad_(True)
    hand_loss(x, red).backward()
    assert torch.isfinite(x.grad).all()


def test_inputs_in_minus_one_one_are_mapped_to_zero_one_before_imagenet_statistics(hand_loss):
    """ImageNet's red mean is 0.485 (torchvision's documented normalisation): mid-grey 0.0 in
    [-1, 1] is 0.5 in [0, 1], just above it (red feature on: e0), and -0.1 is 0.45, just below
    (red feature off: 0). Taken as [0, 1] values, both would be below the mean."""
    red = _flat(1, -1, -1)
    assert hand_loss(_flat(0.0, -1, -1), red).item() == pytest.approx(0.0, abs=1e-7)
    assert hand_loss(_flat(-0.1, -1, -1), red).item() == pytest.approx(1 / 64, rel=1e-5)
