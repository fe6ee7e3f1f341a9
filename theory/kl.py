"""Exact KL divergence between two softmax policies over the same action set."""

from __future__ import annotations

import torch

from ._checks import check_logits, check_same_shape
from .softmax import _expect, _log_policy, _prepare


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) = Σ_a p_a (log p_a − log q_a) for p = softmax(logits_p), q = softmax(logits_q).

    Its logit gradient is ∇_{z_p} KL = F_p (log p − log q) (docs/theory.md §1.12). Actions masked in p
    contribute 0; an action masked in q but not in p gives +inf.

    Args:
      logits_p, logits_q: ``[..., n]`` of identical shape.
    Returns:
      ``[...]`` non-negative.
    """
    check_logits(logits_p, "logits_p")
    check_logits(logits_q, "logits_q")
    check_same_shape(logits_p, logits_q, "logits_p", "logits_q")
    zp, zq = _prepare(logits_p, logits_q)
    lp, p, valid_p = _log_policy(zp)
    lq = torch.log_softmax(zq, dim=-1)
    diff = torch.where(valid_p, lp - lq, torch.zeros_like(lp))
    return _expect(p, diff)
