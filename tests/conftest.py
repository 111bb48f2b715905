"""Shared fixtures: a tiny but real CoinRun dataset, recorded by sample.py's own code."""

import shutil
from pathlib import Path

import pytest

from genie.record import sample
from genie.splitting import split

# 8 levels x 150 steps, seed 0: small enough to record in about a second, and levels 3, 6 and 7
# die mid-episode, so the restart handling is exercised (tests assert that, not assume it).
TINY = dict(env_name="Coinrun", num_envs=8, timeout=150, seed=0)
TINY_RATIOS = (0.5, 0.25, 0.25)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Recorded and split; treat as read-only (copy it with `tiny_copy` to modify)."""
    root = tmp_path_factory.mktemp("tiny")
    sample(root, workers=2, command="tests", progress=False, **TINY)
    split(root, "Coinrun", TINY_RATIOS, seed=0, progress=False)
    return root


@pytest.fixture
def tiny_copy(tiny_root, tmp_path) -> Path:
    """A private, writable copy of the tiny dataset."""
    shutil.copytree(tiny_root, tmp_path / "data")
    return tmp_path / "data"
