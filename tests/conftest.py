"""Shared fixtures: a tiny but real CoinRun dataset, recorded by sample.py's own code."""

import shutil
from pathlib import Path

import pytest

from genie.record import sample
from genie.splitting import split
from helpers.tiny import TINY, TINY_RATIOS


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
