"""Image grids written beside the CSV log when no TensorBoard is installed."""

from __future__ import annotations

import numpy as np
import torch

from genie.data import to_frames


def pair_grid(real: torch.Tensor, fake: torch.Tensor, clips: int = 4) -> np.ndarray:
    """Videos `(b c t h w)` in [-1, 1] -> one uint8 image `(2 * clips * h, t * w, c)`: for each of
    the first `clips` clips a row of its real frames above a row of the model's."""
    real, fake = to_frames(real[:clips]).cpu(), to_frames(fake[:clips]).cpu()  # (b t h w c)
    rows = [torch.cat(list(x[i]), dim=1) for i in range(len(real)) for x in (real, fake)]  # (h, t*w, c)
    return torch.cat(rows, dim=0).numpy()
