"""Outcome advantages of GRPO-style groups (no critic), shared by the simulators and the LLM trainer.

For a group of n responses to one prompt with rewards r_1..r_n (Shao et al. 2024, GRPO):

    grpo:    A_i = (r_i − mean r) / (std r + eps)       (std: unbiased, as in verl)
    drgrpo:  A_i =  r_i − mean r                         (Liu et al. 2025, "Dr. GRPO": no std division)

Groups are contiguous blocks of ``group_size`` along the last axis of ``rewards`` ``[..., M]``: the
simulators pass ``[B, M]`` (B independent runs), the LLM trainer ``[G·n]`` (G prompts). The sequence
advantage is broadcast to every response token by the caller. A group whose rewards are all equal has
A = 0 everywhere (:func:`zero_variance_groups`; dropped by dynamic sampling).
"""

from __future__ import annotations

import operator

import torch

from ._checks import check_scalar
from .names import ADVANTAGE_ESTIMATORS  # the names of group_advantages' ``estimator``


def _groups(rewards, group_size) -> torch.Tensor:
    """``rewards`` ``[..., M]`` viewed as ``[..., M / n, n]`` after checking the arguments."""
    if not isinstance(rewards, torch.Tensor) or rewards.dim() < 1:
        raise ValueError("rewards must be a tensor with a group axis (shape [..., M])")
    m = rewards.shape[-1]
    try:
        n = None if isinstance(group_size, bool) else operator.index(group_size)  # ints, numpy ints
    except TypeError:
        n = None
    if n is None or n < 2 or m % n:
        raise ValueError(f"group_size must be an int >= 2 dividing M = {m} (last axis), got {group_size!r}")
    return rewards.reshape(*rewards.shape[:-1], m // n, n)


def group_advantages(rewards: torch.Tensor, group_size: int, estimator: str = "grpo",
                     eps: float = 1e-6) -> torch.Tensor:
    """Group-relative advantages of every response.

    Args:
      rewards: ``[..., M]`` rewards; groups of ``group_size`` are contiguous along the last axis
        (responses ``g*n .. g*n+n-1`` share a prompt).
      group_size: n >= 2, dividing M.
      estimator: ``grpo`` (A = (r − mean)/(std + eps), unbiased std) or ``drgrpo`` (A = r − mean).
      eps: added to the group std (grpo only).
    Returns:
      ``[..., M]`` advantages, float64 for float64 rewards, else float32.
    Raises:
      ValueError: unknown estimator, or a group size that is not an int >= 2 dividing M.
    """
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(
            f"unknown advantage estimator {estimator!r}; choose one of: {', '.join(ADVANTAGE_ESTIMATORS)}"
        )
    eps = check_scalar(eps, "eps", nonnegative=True)
    g = _groups(rewards, group_size)
    g = g.to(torch.float64 if g.dtype == torch.float64 else torch.float32)
    centred = g - g.mean(dim=-1, keepdim=True)
    if estimator == "grpo":
        centred = centred / (g.std(dim=-1, keepdim=True) + eps)
    return centred.reshape(rewards.shape)


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[..., M / n]`` bool: the groups whose rewards are all equal (no learning signal)."""
    g = _groups(rewards, group_size)
    return (g == g[..., :1]).all(dim=-1)


__all__ = ["ADVANTAGE_ESTIMATORS", "group_advantages", "zero_variance_groups"]
