"""Image grids written beside the CSV log when no TensorBoard is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_png(path: Path, image: np.ndarray) -> None:
    """Write an `(h w c)` uint8 image atomically (temp file, then rename)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    tmp.replace(path)
