"""Perceptual (LPIPS-style feature) loss on a frozen ImageNet VGG16.

Comparing images in the feature space of a pretrained classifier instead of pixel space
(Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution") rewards sharp, plausible texture where a pixel MSE rewards blur.
Following Zhang et al. 2018 (LPIPS, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric"), each layer's features are unit-normalised along channels before the
squared difference, so every layer contributes on a comparable scale. Unlike LPIPS there
are no learned per-channel weights: the loss is the plain mean over layers.

The VGG16 convolution stack is written here in plain PyTorch (torchvision must not be a
dependency), but its parameter names are exactly torchvision's ``vgg16().features.*``,
so the official ImageNet weights file ``vgg16-397923af.pth`` loads directly with
``strict`` key checking and no renaming table that could silently drift.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

WEIGHTS_FILE = "vgg16-397923af.pth"
WEIGHTS_URL = f"https://download.pytorch.org/models/{WEIGHTS_FILE}"
DEFAULT_FEAT_LAYERS: tuple[str, ...] = ("features.6", "features.13", "features.18", "features.25")

# torchvision's VGG16 configuration "D": channel counts, "M" = 2x2 max pool.
_VGG16_CFG: tuple[int | str, ...] = (
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, "M"),
    *(512, 512, 512, "M"),
    *(512, 512, 512, "M"),
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_NORM_EPS = 1e-10  # LPIPS's epsilon; applied in float32 (it would underflow to 0 in fp16)


class PerceptualWeightsMissing(FileNotFoundError):
    """The ImageNet VGG16 weights are not on disk and could not be downloaded."""


def hub_weights_path() -> str:
    """Where torch hub caches the weights (``$TORCH_HOME/hub/checkpoints/...``) and where we look for them."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", WEIGHTS_FILE)


class VGG16Features(nn.Module):
    """torchvision's ``vgg16().features`` (31 modules, same indices), without the classifier."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1))
                # not inplace: the activation we return must not be overwritten by a later layer
                layers.append(nn.ReLU(inplace=False))
                in_ch = int(v)
        self.features = nn.Sequential(*layers)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(f"features.{i}" for i in range(len(self.features)))

    def layer_indices(self, layers: Sequence[str]) -> list[int]:
        """Indices into ``features`` for names like ``'features.6'``; ValueError for unknown names."""
        valid = self.layer_names
        unknown = [name for name in layers if name not in valid]
        if unknown or not layers:
            raise ValueError(f"unknown VGG16 layer name(s) {unknown or list(layers)}; valid names: {', '.join(valid)}")
        return [valid.index(name) for name in layers]

    def forward(self, x: Tensor, layers: Sequence[str] = DEFAULT_FEAT_LAYERS) -> list[Tensor]:
        """Activations at ``layers`` (in the order given); stops after the deepest one requested."""
        indices = self.layer_indices(layers)
        wanted = set(indices)
        found: dict[int, Tensor] = {}
        for i, module in enumerate(self.features[: max(indices) + 1]):
            x = module(x)
            if i in wanted:
                found[i] = x
        return [found[i] for i in indices]


def load_vgg16_weights(model: VGG16Features, weights_path: str | None = None) -> VGG16Features:
    """Load ImageNet weights into ``model``: explicit path, else the torch hub cache, else a download.

    Never falls back to random weights: a perceptual loss on an untrained VGG would train
    silently towards meaningless features.
    """
    if weights_path is not None:
        if not os.path.isfile(weights_path):
            raise PerceptualWeightsMissing(
                f"VGG16 weights file not found: {weights_path!r} (get it from {WEIGHTS_URL})"
            )
        state, source = _read_state_dict(weights_path), weights_path
    elif os.path.isfile(cached := hub_weights_path()):
        state, source = _read_state_dict(cached), cached
    else:
        try:
            # saves to the hub cache too, so the next run finds it offline
            state = torch.hub.load_state_dict_from_url(WEIGHTS_URL, progress=False, map_location="cpu")
        except Exception as err:  # any network/IO failure means "not available here", reported below
            raise PerceptualWeightsMissing(
                f"ImageNet VGG16 weights for the perceptual loss are missing and could not be downloaded "
                f"({type(err).__name__}: {err}). Download {WEIGHTS_URL} and put it at {cached}, "
                f"or pass perceptual_weights=/path/to/{WEIGHTS_FILE} (weights_path=...)."
            ) from err
        source = WEIGHTS_URL

    # the file is a full torchvision vgg16 state dict; only the conv stack is ours
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(features))
    unexpected = sorted(set(features) - set(expected))
    bad_shape = [
        f"{k}: file {tuple(features[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in features and features[k].shape != v.shape
    ]
    if missing or unexpected or bad_shape:
        raise ValueError(
            f"{source} is not a torchvision vgg16 state dict ({WEIGHTS_FILE}): "
            f"missing keys {missing}, unexpected keys {unexpected}, shape mismatches {bad_shape}"
        )
    model.load_state_dict(features, strict=True)
    return model


def _read_state_dict(path: str) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"could not read VGG16 weights from {path!r}: {type(err).__name__}: {err}") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} does not hold a state dict (got {type(state).__name__})")
    return state


class PerceptualLoss(nn.Module):
    """Mean over ``feat_layers`` of the MSE between channel-unit-normalised VGG16 features.

    Inputs are images ``(n, 3, h, w)`` or videos ``(b, 3, t, h, w)`` in [-1, 1]. The VGG is
    frozen and always in eval mode, but the loss is differentiable w.r.t. ``input``.
    """

    def __init__(
        self,
        model: str = "vgg16",
        feat_layers: tuple[str, ...] = DEFAULT_FEAT_LAYERS,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        if model != "vgg16":
            raise ValueError(f"unsupported perceptual model {model!r}; only 'vgg16' is available")
        self.vgg = VGG16Features()
        self.vgg.layer_indices(feat_layers)  # fail at construction, not at the first training step
        self.feat_layers = tuple(feat_layers)
        load_vgg16_weights(self.vgg, weights_path)
        self.vgg.requires_grad_(False)
        # non-persistent: constants, not state worth checkpointing
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.train(False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        # a parent's .train() must not flip the pretrained feature extractor out of eval
        return super().train(False)

    def _features(self, x: Tensor) -> list[Tensor]:
        if x.ndim == 5:
            x = rearrange(x, "b c t h w -> (b t) c h w")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (n, 3, h, w) or (b, 3, t, h, w) images, got shape {tuple(x.shape)}")
        x = ((x + 1) / 2 - self.mean) / self.std  # [-1, 1] -> [0, 1] -> ImageNet statistics VGG was trained on
        feats = self.vgg(x, self.feat_layers)
        # normalise in float32: under fp16 autocast the 1e-10 epsilon is 0 and dead pixels give 0/0
        feats = [f.float() for f in feats]
        return [f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + _NORM_EPS) for f in feats]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        if input.shape != target.shape:
            raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} shapes differ")
        feats = self._features(input)  # never detached: the generator learns through this
        with torch.no_grad():  # the target is real data; no graph needed
            target_feats = self._features(target)
        losses = [(f - t).pow(2).mean() for f, t in zip(feats, target_feats)]
        return torch.stack(losses).mean()
