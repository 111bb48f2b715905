"""PNG figures of the evaluation report (matplotlib, headless)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)  # atomic: a half-written figure never replaces a good one
    return path


def confusion_plot(contingency: np.ndarray, path: Path, true_names: list[str] | None = None) -> Path:
    """Latent action (rows) x true action (columns): each column normalised to P(latent | true)."""
    plt = _pyplot()
    counts = np.asarray(contingency, dtype=np.float64)
    share = counts / np.maximum(counts.sum(0, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.5 * counts.shape[1], 1 + 0.45 * counts.shape[0]))
    im = ax.imshow(share, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xlabel("true CoinRun action")
    ax.set_ylabel("latent action")
    names = true_names or [str(i) for i in range(counts.shape[1])]
    ax.set_xticks(range(counts.shape[1]), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(counts.shape[0]))
    ax.set_title("P(latent action | true action)")
    fig.colorbar(im, ax=ax, fraction=0.04)
    path = _save(fig, path)
    plt.close(fig)
    return path


def horizon_plot(curves: dict[str, list[float]], path: Path, ylabel: str = "PSNR (dB)") -> Path:
    """One line per named curve over horizons t = 1..k."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    ax.set_xlabel("frames generated from one context frame (t)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = _save(fig, path)
    plt.close(fig)
    return path


def training_plot(panels: dict[str, dict[str, tuple[list[float], list[float]]]], path: Path) -> Path:
    """One panel per title, each with named `(steps, values)` lines (training logs)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels.items()):
        for name, (steps, values) in lines.items():
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path
