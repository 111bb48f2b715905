"""The learning-rate schedule of both stages: linear warm-up, then cosine decay to min_lr."""

from types import SimpleNamespace

import pytest
import torch

from genie.lit.schedule import warmup_cosine, warmup_cosine_scheduler

# lr 1e-3 -> 1e-4 over 110 steps, the first 10 of them warm-up: the decay spans steps 10..110.
SCHEDULE = dict(lr=1e-3, min_lr=1e-4, warmup_steps=10, total_steps=110)


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 1e-4),  # the first step already trains: lr * 1/10, not 0
        (4, 5e-4),  # lr * 5/10
        (9, 1e-3),  # the end of warm-up: lr * 10/10
        (10, 1e-3),  # the decay starts at lr: cos 0 = 1
        (35, 1e-4 + 9e-4 * (1 + 2**-0.5) / 2),  # a quarter of the decay: (1 + cos 45 deg) / 2 = 0.8536
        (60, 5.5e-4),  # half-way: (1 + cos 90 deg) / 2 = 1/2 of the way from 1e-3 to 1e-4
        (110, 1e-4),  # the end: min_lr
        (500, 1e-4),  # and after it
    ],
)
def test_warmup_cosine_by_hand(step, expected):
    assert warmup_cosine(step, **SCHEDULE) == pytest.approx(expected, rel=1e-9)


def test_no_decay_when_training_ends_with_the_warm_up():
    schedule = dict(lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert [warmup_cosine(s, **schedule, total_steps=10) for s in (0, 9, 10, 50)] == pytest.approx(
        [1e-4, 1e-3, 1e-3, 1e-3], rel=1e-9
    )
    assert warmup_cosine(30, lr=2e-4, min_lr=2e-4, warmup_steps=0, total_steps=100) == pytest.approx(2e-4)  # constant


def test_scheduler_decays_to_the_trainers_max_steps():
    """The optimizer's lr step by step, with the decay's end read from `trainer.max_steps`."""
    param = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([param], lr=1e-3)
    module = SimpleNamespace(trainer=SimpleNamespace(max_steps=110))
    sched = warmup_cosine_scheduler(opt, module, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    seen = []
    for _ in range(111):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(1e-4) and seen[9] == pytest.approx(1e-3)
    assert seen[60] == pytest.approx(5.5e-4) and seen[110] == pytest.approx(1e-4)
    # max_steps -1 (train by epochs): no known end, so no decay after the warm-up
    opt = torch.optim.SGD([param], lr=1e-3)
    sched = warmup_cosine_scheduler(opt, SimpleNamespace(trainer=SimpleNamespace(max_steps=-1)), lr=1e-3, min_lr=1e-4,
                                    warmup_steps=10)  # fmt: skip
    for _ in range(50):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
