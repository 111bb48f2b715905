"""A small vector-quantized codebook for the latent actions (VQ-VAE; van den Oord et al. 2017).

Shape legend: N vectors, d = d_codebook (width of a code vector), K = num_codes.

Genie's latent action model quantizes each transition to one of a handful of codes
(App. F: 6 for CoinRun). Unlike the tokenizer's LFQ, where d bits give 2^d codes, this is a
real codebook of exactly K vectors of width d ("8 actions" through 8 LFQ bits would be 256).

Loss (VQ-VAE eq. 3): ||sg(z) - q||^2 (moves the codes) + commit * ||z - sg(q)||^2 (keeps the
encoder near its code); gradients reach the encoder straight through q.

Anti-collapse (peers report every transition mapped to one action):
- optionally (`normalize`), encoder outputs and codes are l2-normalised before the nearest-
  neighbour search (ViT-VQGAN, Yu et al. 2022, Sec. 3.2): codes then compete on direction
  only, so one code near the origin cannot absorb every small-motion transition;
- the codebook is initialised from the first training batch's encoder outputs, so every
  code starts where the data is;
- each code's share of assignments is tracked as an exponential moving average, and a
  code whose share falls below `dead_fraction` of the uniform share 1/K is restarted at a
  randomly chosen encoder output of the current batch (as in Jukebox, Dhariwal et al.
  2020, and SoundStream). Under DDP, usage is averaged over processes and the restarted
  rows are broadcast from rank 0, so the replicas stay identical.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from genie.metrics import count_ids


class VQResult(NamedTuple):
    vectors: torch.Tensor  # (..., d) quantized, straight-through gradients to the input
    indices: torch.Tensor  # (...) int64 in [0, K)
    loss: torch.Tensor  # codebook + commit * commitment
    terms: dict[str, torch.Tensor]  # unweighted terms by name


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantization to a codebook of `num_codes` vectors of width `dim`.

    Args:
        num_codes: K, the number of codes (latent actions).
        dim: d, the width of each code vector.
        commit_weight: weight of the commitment term.
        usage_decay: decay of the moving average of code usage.
        dead_fraction: a code used less than this fraction of its fair share 1/K is restarted;
            0 disables restarts.
        normalize: l2-normalise vectors and codes (cosine-similarity codebook).
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        commit_weight: float = 0.25,
        usage_decay: float = 0.99,
        dead_fraction: float = 0.1,
        normalize: bool = False,
    ):
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"need num_codes >= 1 and dim >= 1, got {num_codes}, {dim}")
        self.num_codes, self.dim = num_codes, dim
        self.commit_weight, self.usage_decay, self.dead_fraction = commit_weight, usage_decay, dead_fraction
        self.normalize = normalize
        self.codebook = nn.Parameter(torch.randn(num_codes, dim) / dim**0.5)
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # total, for logging

    def forward(self, z: torch.Tensor) -> VQResult:
        """`z (..., d)` -> quantized vectors `(..., d)`, indices `(...)`, loss."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"expected vectors of width {self.dim}, got shape {tuple(z.shape)}")
        flat = z.reshape(-1, self.dim)
        if self.normalize:
            flat = F.normalize(flat, dim=-1)
        if self.training and not self._initialized():
            self._init_from(flat.detach())
        codebook = self._codes().to(flat.dtype)
        indices = torch.cdist(flat.float(), codebook.float()).argmin(dim=-1)  # (N)
        q = codebook[indices]
        terms = {"codebook": F.mse_loss(q, flat.detach()), "commit": F.mse_loss(flat, q.detach())}
        loss = terms["codebook"] + self.commit_weight * terms["commit"]
        if self.training and self.dead_fraction > 0:
            self._track_and_restart(indices, flat.detach())
        vectors = flat + (q - flat).detach()  # straight-through estimator
        return VQResult(vectors.view_as(z), indices.view(z.shape[:-1]), loss, terms)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices `(...)` -> code vectors `(..., d)`."""
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_codes):
            raise ValueError(f"indices must lie in [0, {self.num_codes}), got {indices.min()}..{indices.max()}")
        return self._codes()[indices]

    def _codes(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1) if self.normalize else self.codebook

    # --- anti-collapse ---
    def _initialized(self) -> bool:
        # The buffer travels with checkpoints; the Python flag spares a device sync per step.
        if not getattr(self, "_init_seen", False):
            self._init_seen = bool(self.initialized)
        return self._init_seen

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        picks = torch.randint(0, len(flat), (self.num_codes,), device=flat.device)
        self.codebook.data.copy_(flat[picks].float() + 1e-3 * torch.randn_like(self.codebook))
        self._sync_from_rank0()
        self.initialized.fill_(True)
        self._init_seen = True

    @torch.no_grad()
    def _track_and_restart(self, indices: torch.Tensor, flat: torch.Tensor) -> None:
        share = count_ids(indices, self.num_codes).float() / max(len(indices), 1)  # no host sync
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(share)
            share /= dist.get_world_size()
        self.usage.mul_(self.usage_decay).add_(share, alpha=1 - self.usage_decay)
        # No `if dead.any()`: a branch on a GPU value would stall the host every step.
        dead = self.usage < self.dead_fraction / self.num_codes  # (K) bool
        picks = torch.randint(0, len(flat), (self.num_codes,), device=flat.device)
        fresh = flat[picks].float() + 1e-3 * torch.randn_like(self.codebook)
        self.codebook.data.copy_(torch.where(dead[:, None], fresh, self.codebook.data))
        self.usage.copy_(torch.where(dead, torch.full_like(self.usage, 1.0 / self.num_codes), self.usage))
        self.restarts.add_(dead.sum())
        self._sync_from_rank0()

    def _sync_from_rank0(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(self.codebook.data, src=0)
            dist.broadcast(self.usage, src=0)
