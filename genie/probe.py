"""Do the latent actions carry the game's controls? A linear probe held against a supervised ceiling.

Shape legend: n clips, T frames per clip, H W c pixels, d action-vector width, G effective
groups (`genie.control.EFFECTIVE_GROUPS`), N transitions.

NMI says whether latent and recorded actions co-vary; a probe says how much of the control a
reader can recover. The label of transition t -> t+1 is the effective group of the recorded
action taken at t (CoinRun's 15 button combos collapse to left / right / up / none
combinations). Two readers, both trained on transitions of the training levels and scored on
held-out levels:

- the linear probe: multinomial logistic regression from the LAM's action (one-hot, as the
  dynamics model sees it; and the encoder's vector before quantization);
- the ceiling: a small CNN trained with the labels on the frames the LAM itself reads
  (t-1, t, t+1; the LAM's encoder sees every frame up to t+1). What it cannot tell apart
  (CoinRun has momentum: a step's button barely changes the next frame) no latent action can.

Both are trained class-balanced, and the headline score is balanced accuracy (mean recall per
group): 8 of the 15 button combos do nothing, so plain accuracy rewards always answering
"none". `balanced_fraction` = (probe - chance) / (ceiling - chance), chance = 1 / (groups
present): how far the probe gets from chance to the ceiling. Plain accuracy is reported too,
its chance being the training levels' most common group.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genie.action import LatentAction
from genie.control import EFFECTIVE_GROUPS, effective_group
from genie.data import ClipDataset, to_video


class ProbeData(NamedTuple):
    frames: torch.Tensor  # (n T H W c) uint8 clips
    groups: torch.Tensor  # (n T-1) int64: effective group of the recorded action at t (t -> t+1)
    latent: torch.Tensor  # (n T-1) int64: the LAM's action of the same transition
    features: torch.Tensor  # (n T-1 d): the LAM's action vector before quantization


class Scores(NamedTuple):
    accuracy: float
    balanced_accuracy: float


def group_table(action_names: list[str]) -> torch.Tensor:
    """Recorded action id -> effective group id, `(A)`."""
    return torch.tensor([effective_group(name) for name in action_names])


@torch.no_grad()
def collect(lam: LatentAction, dataset: ClipDataset, clips: np.ndarray, groups_of: torch.Tensor,
            batch_size: int = 32, device: str | torch.device = "cpu") -> ProbeData:  # fmt: skip
    """The LAM's actions and the effective groups of the transitions of `dataset[clips]`."""
    lam.eval()
    frames, groups, latent, features = [], [], [], []
    for i in range(0, len(clips), batch_size):
        raw = [dataset[int(j)] for j in clips[i : i + batch_size]]
        clip = torch.stack([r.frames for r in raw])  # (b T H W c)
        video = to_video(clip.to(device))
        z = lam.action_features(video)
        frames.append(clip)
        groups.append(groups_of[torch.stack([r.actions for r in raw])[:, :-1]])
        latent.append(lam.quantizer(z).indices.cpu())
        features.append(z.float().cpu())
    return ProbeData(torch.cat(frames), torch.cat(groups), torch.cat(latent), torch.cat(features))


def scores(pred: torch.Tensor, target: torch.Tensor) -> Scores:
    """Accuracy and balanced accuracy (mean per-class recall over the classes present)."""
    recalls = [(pred[target == g] == g).float().mean().item() for g in target.unique()]
    return Scores(round((pred == target).float().mean().item(), 4), round(float(np.mean(recalls)), 4))


def class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights `(G)`: every group counts as much in the loss (CoinRun's
    "none" group is 8 of the 15 button combos and would otherwise win every doubt)."""
    counts = y.bincount(minlength=num_classes).float()
    return torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)


def linear_probe(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, num_classes: int,
                 weight_decay: float = 1e-3, iters: int = 200) -> torch.Tensor:  # fmt: skip
    """Multinomial logistic regression `(N d) -> G`, class-balanced, fitted with L-BFGS on
    standardized inputs; returns the predicted classes of `x_test`."""
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    xs, xt = (x_train - mean) / std, (x_test - mean) / std
    head = nn.Linear(xs.shape[1], num_classes)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=iters, line_search_fn="strong_wolfe")
    weight = class_weights(y_train, num_classes)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(xs), y_train, weight=weight) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return head(xt).argmax(-1)


class InverseDynamics(nn.Module):
    """Frames (t-1, t, t+1) stacked on channels, `(N 9 H W)` in [-1, 1] -> group logits `(N G)`."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(9, width, 4, 2, 1), nn.GELU(),  # 64 -> 32
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.GELU(),  # -> 16
            nn.Conv2d(2 * width, 2 * width, 4, 2, 1), nn.GELU(),  # -> 8
            nn.Conv2d(2 * width, 4 * width, 3, 1, 1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # motion is read anywhere in the frame
            nn.Linear(4 * width, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def transition_inputs(frames: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Inputs of transitions `index (N 2)` = (clip, t) of `frames (n T H W c)` uint8: frames
    t-1 (t itself at t = 0), t and t+1 on channels, `(N 9 H W)` in [-1, 1]."""
    clip, t = index[:, 0], index[:, 1]
    trio = torch.stack([frames[clip, (t - 1).clamp(min=0)], frames[clip, t], frames[clip, t + 1]], dim=1)
    return rearrange(to_video(trio), "N c k H W -> N (k c) H W")


def train_inverse_dynamics(data: ProbeData, num_classes: int, steps: int = 1500, batch_size: int = 64,
                           lr: float = 1e-3, seed: int = 0) -> InverseDynamics:  # fmt: skip
    """The supervised ceiling, trained on every transition of `data` with the true groups
    (class-balanced, like the probe)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = InverseDynamics(num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    n, t = data.groups.shape
    weight = class_weights(data.groups.flatten(), num_classes)
    for _ in range(steps):
        flat = torch.randint(n * t, (batch_size,), generator=generator)
        index = torch.stack([flat // t, flat % t], dim=1)
        loss = F.cross_entropy(model(transition_inputs(data.frames, index)), data.groups[index[:, 0], index[:, 1]],
                               weight=weight)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: InverseDynamics, frames: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted group of every transition of `frames (n T H W c)`, flattened clip-major `(n (T-1))`."""
    n, t = frames.shape[0], frames.shape[1] - 1
    index = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(t), indexing="ij"), -1).reshape(-1, 2)
    return torch.cat([model(transition_inputs(frames, index[i : i + batch_size])).argmax(-1)
                      for i in range(0, len(index), batch_size)])  # fmt: skip


def _fraction(probe: float, chance: float, ceiling: float) -> float | None:
    return round((probe - chance) / (ceiling - chance), 3) if ceiling > chance else None


def action_probes(train: ProbeData, test: ProbeData, num_actions: int, classifier_steps: int = 1500,
                  seed: int = 0) -> dict:  # fmt: skip
    """The report: probes from the latent action (one-hot) and from its pre-quantization vector,
    the inverse-dynamics ceiling, chance, and each probe's fraction of the way to the ceiling."""
    G = len(EFFECTIVE_GROUPS)
    y_train, y_test = train.groups.flatten(), test.groups.flatten()
    majority = torch.full_like(y_test, int(y_train.bincount(minlength=G).argmax()))
    chance = Scores(scores(majority, y_test).accuracy, round(1 / len(y_test.unique()), 4))
    onehot = linear_probe(F.one_hot(train.latent.flatten(), num_actions).float(), y_train,
                          F.one_hot(test.latent.flatten(), num_actions).float(), G)  # fmt: skip
    vector = linear_probe(train.features.flatten(0, 1), y_train, test.features.flatten(0, 1), G)
    ceiling = scores(predict(train_inverse_dynamics(train, G, classifier_steps, seed=seed), test.frames), y_test)
    out = {"groups": list(EFFECTIVE_GROUPS), "train_transitions": len(y_train), "test_transitions": len(y_test),
           "test_group_counts": y_test.bincount(minlength=G).tolist(), "chance": chance._asdict(),
           "inverse_dynamics": ceiling._asdict(), "classifier_steps": classifier_steps}  # fmt: skip
    for name, pred in (("latent_action", onehot), ("latent_vector", vector)):
        s = scores(pred, y_test)
        out[name] = {**s._asdict(),
                     "fraction": _fraction(s.accuracy, chance.accuracy, ceiling.accuracy),
                     "balanced_fraction": _fraction(s.balanced_accuracy, chance.balanced_accuracy,
                                                    ceiling.balanced_accuracy)}  # fmt: skip
    return out
