"""Building blocks shared by the token-level objectives and the covariance selection (paper §4.2).

Input validation and casting (:func:`_prepare`), the clamped importance ratio ρ (the clamp is
:data:`theory.objective_metrics.LOG_RATIO_CLAMP`), the PPO clipped surrogate with its clip indicators
(paper Eq. 4), and the ε checks. Private: use the objectives from :mod:`theory.objectives`. Nothing
here synchronises with the host.
"""

from __future__ import annotations

import torch

from ._checks import check_same_shape, check_scalar, compute_dtype
from .aggregation import _check_token_mask, _check_token_tensor
from .objective_metrics import LOG_RATIO_CLAMP


def _prepare(log_prob, old_log_prob, advantages, mask):
    """Validate and cast. Returns (lp, old, adv, m): lp keeps its graph, equals old at masked tokens
    (so ρ = 1 there and padding garbage cannot leak); adv is 0 at masked tokens; m is bool."""
    _check_token_tensor(log_prob, "log_prob")
    _check_token_tensor(old_log_prob, "old_log_prob")
    _check_token_tensor(advantages, "advantages")
    check_same_shape(log_prob, old_log_prob, "log_prob", "old_log_prob")
    check_same_shape(log_prob, advantages, "log_prob", "advantages")
    for name, t in (("old_log_prob", old_log_prob), ("advantages", advantages)):
        if t.device != log_prob.device:
            raise ValueError(f"{name} is on {t.device} but log_prob is on {log_prob.device}")
    m = _check_token_mask(mask, log_prob)
    dtype = compute_dtype(log_prob, old_log_prob, advantages)
    old = old_log_prob.detach().to(dtype)
    old = torch.where(m, old, torch.zeros_like(old))
    lp = torch.where(m, log_prob.to(dtype), old)
    adv = advantages.detach().to(dtype)
    adv = torch.where(m, adv, torch.zeros_like(adv))
    return lp, old, adv, m


def _ratio(lp: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(lp - old, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))


def _ppo_terms(ratio, adv, m, eps_low, eps_high):
    """PPO surrogate max(−Aρ, −A·clip(ρ, 1−ε_l, 1+ε_h)) and where its clip is active (low / high)."""
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    clipped = (pg2 > pg1) & m
    clipped_low = clipped & (ratio < 1.0 - eps_low)
    clipped_high = clipped & (ratio > 1.0 + eps_high)
    return torch.maximum(pg1, pg2), clipped_low, clipped_high


def _check_eps(eps_low, eps_high) -> tuple[float, float]:
    lo = check_scalar(eps_low, "eps_low", nonnegative=True)
    hi = check_scalar(eps_high, "eps_high", nonnegative=True)
    if lo > 1.0:
        raise ValueError(f"eps_low={lo} must be <= 1 (the lower clip bound 1 - eps_low would be negative)")
    return lo, hi
