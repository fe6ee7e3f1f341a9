"""Outcome advantages for GRPO-style groups (no critic).

For a group of ``n`` responses to one prompt with rewards ``r_1..r_n`` (Shao et al. 2024, GRPO):

    grpo:    A_i = (r_i − mean(r)) / (std(r) + eps)        (std: unbiased, as in verl)
    drgrpo:  A_i =  r_i − mean(r)                          (Liu et al. 2025, "Dr. GRPO": no std division)

The sequence advantage is broadcast to every response token. A group whose rewards are all equal has
``A = 0`` everywhere (and is dropped by dynamic sampling).
"""

from __future__ import annotations

import torch

from .config import ADVANTAGE_ESTIMATORS


def group_advantages(rewards: torch.Tensor, group_size: int, estimator: str = "grpo",
                     eps: float = 1e-6) -> torch.Tensor:
    """Group-normalised advantages.

    Args:
      rewards: ``[G * n]`` rewards, groups contiguous (responses ``g*n .. g*n+n-1`` share a prompt).
      group_size: ``n`` >= 2.
      estimator: ``grpo`` or ``drgrpo``.
    Returns:
      ``[G * n]`` advantages (float32 or the rewards' float64).
    """
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; choose one of: {', '.join(ADVANTAGE_ESTIMATORS)}")
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1:
        raise ValueError("rewards must be a 1-D tensor")
    if not isinstance(group_size, int) or group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"group_size must be an int >= 2 dividing len(rewards)={rewards.numel()}, got {group_size!r}")
    r = rewards.to(torch.float64 if rewards.dtype == torch.float64 else torch.float32).view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if estimator == "grpo":
        centred = centred / (r.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[G]`` bool: groups whose rewards are all equal (no learning signal)."""
    r = rewards.view(-1, group_size)
    return (r == r[:, :1]).all(dim=1)
