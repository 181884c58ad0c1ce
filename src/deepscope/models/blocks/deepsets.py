"""Deep Sets over zero-padded tracks (Zaheer et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn

from deepscope.models.blocks.dense import DenseStack

__all__ = ["DeepSets", "track_mask"]


def track_mask(tracks: torch.Tensor) -> torch.Tensor:
    """(B, T, F) -> (B, T, 1): 1 for real tracks, 0 for tracks whose features are all zero."""
    return (tracks.abs().sum(-1, keepdim=True) > 0).to(tracks.dtype)


class DeepSets(nn.Module):
    """φ per track → zero the padded tracks → sum over tracks → ρ. Permutation invariant."""

    def __init__(self, phi: DenseStack, rho: DenseStack) -> None:
        super().__init__()
        self.phi, self.rho = phi, rho
        self.out_features = rho.out_features

    def forward(self, tracks: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, out)
        mask = track_mask(tracks)
        return self.rho((self.phi(tracks) * mask).sum(1))
