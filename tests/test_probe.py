"""The action probes: scores, class balancing, a linear probe and the inverse-dynamics ceiling on
synthetic transitions whose answer is known."""

import numpy as np
import torch

from genie.control import EFFECTIVE_GROUPS
from genie.probe import ProbeData, action_probes, class_weights, linear_probe, predict, scores, train_inverse_dynamics

LEFT, NONE, RIGHT = (EFFECTIVE_GROUPS.index(g) for g in ("left", "none", "right"))


def test_scores_by_hand():
    pred = torch.tensor([0, 0, 0, 2, 2, 1])
    true = torch.tensor([0, 0, 1, 2, 1, 1])
    s = scores(pred, true)
    assert s.accuracy == round(4 / 6, 4)
    assert s.balanced_accuracy == round((1 + 1 / 3 + 1) / 3, 4)  # recalls of classes 0, 1, 2


def test_class_weights_equalise_groups():
    y = torch.tensor([2] * 6 + [0] * 2 + [4] * 1)
    w = class_weights(y, 6)
    assert w[1] == 0 and w[3] == 0 and w[5] == 0  # absent groups
    assert torch.allclose(w[[2, 0, 4]] * torch.tensor([6.0, 2.0, 1.0]), torch.full((3,), 3.0))  # 9 / 3 groups


def test_linear_probe_reads_a_code_to_group_map():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(6, (600,), generator=g)
    group_of = torch.tensor([LEFT, LEFT, NONE, RIGHT, NONE, RIGHT])
    x = torch.nn.functional.one_hot(codes, 6).float()
    pred = linear_probe(x[:400], group_of[codes[:400]], x[400:], len(EFFECTIVE_GROUPS))
    assert scores(pred, group_of[codes[400:]]).balanced_accuracy == 1.0


def _moving_square(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of 4 32x32 frames: a bright square moving 2 px/frame left, right or not at all."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, 4, 32, 32, 3), np.uint8)
    labels = rng.choice([LEFT, NONE, RIGHT], size=n)
    for i, label in enumerate(labels):
        step = {LEFT: -2, NONE: 0, RIGHT: 2}[label]
        x0, y0 = rng.integers(8, 20), rng.integers(4, 24)
        for t in range(4):
            frames[i, t, y0 : y0 + 4, x0 + step * t : x0 + step * t + 4] = 255
    groups = torch.from_numpy(np.repeat(labels[:, None], 3, axis=1)).long()
    return torch.from_numpy(frames), groups


def test_inverse_dynamics_learns_the_direction():
    frames, groups = _moving_square(96, seed=0)
    data = ProbeData(frames, groups, groups, groups[..., None].float())
    model = train_inverse_dynamics(data, len(EFFECTIVE_GROUPS), steps=300, batch_size=32)
    test_frames, test_groups = _moving_square(48, seed=1)
    assert scores(predict(model, test_frames), test_groups.flatten()).balanced_accuracy > 0.9


def test_action_probes_tell_an_informative_latent_from_a_useless_one():
    frames, groups = _moving_square(96, seed=0)
    test_frames, test_groups = _moving_square(48, seed=1)
    perm = {LEFT: 3, NONE: 0, RIGHT: 5}  # the latent ids a LAM might have given the groups
    latent = groups.clone().apply_(perm.get)
    test_latent = test_groups.clone().apply_(perm.get)
    train = ProbeData(frames, groups, latent, torch.randn(*groups.shape, 4))
    report = action_probes(train, ProbeData(test_frames, test_groups, test_latent, torch.randn(*test_groups.shape, 4)),
                           num_actions=6, classifier_steps=300)  # fmt: skip
    assert report["chance"]["balanced_accuracy"] == round(1 / 3, 4)
    assert report["inverse_dynamics"]["balanced_accuracy"] > 0.9
    assert report["latent_action"]["balanced_accuracy"] == 1.0
    assert report["latent_action"]["balanced_fraction"] > 0.95
    assert report["latent_vector"]["balanced_fraction"] < 0.5  # random vectors
    one_action = torch.zeros(len(groups.flatten()), 6), torch.zeros(len(test_groups.flatten()), 6)  # carries nothing
    useless = linear_probe(one_action[0], groups.flatten(), one_action[1], 6)
    assert scores(useless, test_groups.flatten()).balanced_accuracy == round(1 / 3, 4)
