"""Additive loss terms: the entropy bonus and the reference-KL penalty (paper §4.1).

Each returns a ``[B, T]`` loss matrix (0 at masked tokens) and a metrics dict, like the objectives of
:mod:`theory.objectives`; the trainer adds the matrices to the objective's before aggregating::

    loss_mat, metrics = get_objective("kl_cov")(logp, old_logp, adv, mask, kl_ratio=2e-3)
    ent_mat, m_ent = entropy_bonus(entropy, mask, coef=1e-3)
    kl_mat, m_kl = reference_kl(logp, ref_logp, mask, coef=1e-3, estimator="k3")
    loss = aggregate(loss_mat + ent_mat + kl_mat, mask, "token-mean")

Aggregation is linear, so this equals verl's ``agg(L) − α·agg(H) + β·agg(KL)`` with one mode.
Nothing here synchronises with the host.
"""

from __future__ import annotations

import torch

from ._checks import check_same_shape, check_scalar, compute_dtype
from .aggregation import _check_token_mask, _check_token_tensor
from .names import KL_ESTIMATORS
from .objective_registry import METRIC_ENTROPY, METRIC_REF_KL_K1, METRIC_REF_KL_K2, METRIC_REF_KL_K3
from .surrogate import LOG_RATIO_CLAMP


def entropy_bonus(
    entropy: torch.Tensor, mask: torch.Tensor, *, coef: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Entropy-bonus term to add to an objective's loss matrix: L_t = −α H_t (paper §4.1,
    L_ent = L − α H(π_θ); docs/theory.md §1.11).

    Args:
      entropy: ``[B, T]`` per-token entropy H(π_θ(·|y_<t)), differentiable.
      mask: ``[B, T]`` bool or 0/1.
      coef: α >= 0 (the paper tries 1e-4 … 1e-2).
    Returns:
      (``[B, T]`` matrix, 0 at masked tokens; ``{METRIC_ENTROPY: mean H}``).
    """
    alpha = check_scalar(coef, "coef", nonnegative=True)
    _check_token_tensor(entropy, "entropy")
    m = _check_token_mask(mask, entropy)
    h = entropy.to(compute_dtype(entropy))
    h = torch.where(m, h, torch.zeros_like(h))
    n = m.sum().clamp_min(1).to(h.dtype)
    return -alpha * h, {METRIC_ENTROPY: h.detach().sum() / n}


def reference_kl(
    log_prob: torch.Tensor,
    ref_log_prob: torch.Tensor,
    mask: torch.Tensor,
    *,
    coef: float,
    estimator: str = "k3",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reference-KL term to add to an objective's loss matrix: L_t = β k(y_t), a per-token estimate of
    KL(π_θ ‖ π_ref) from tokens sampled by π_θ (paper §4.1, L_KL = L + β D_KL; docs/theory.md §1.12).
    With δ = log π_ref(y_t) − log π_θ(y_t) (clamped to ±20 for k3) and r = e^δ:

        k1 = −δ,   k2 = ½ δ²,   k3 = r − 1 − δ          (Schulman's estimators; k3 = verl low_var_kl)

    All three have mean ≈ KL(π_θ ‖ π_ref) on-policy; their *gradients* differ: k2's is the unbiased
    ∇KL(π_θ ‖ π_ref), k1's has expectation 0, k3's estimates ∇KL(π_ref ‖ π_θ).

    Args:
      log_prob: ``[B, T]`` current log π_θ of the sampled tokens, differentiable.
      ref_log_prob: ``[B, T]`` log π_ref of the same tokens (detached).
      mask: ``[B, T]`` bool or 0/1.
      coef: β >= 0 (the paper tries 1e-3 … 0.1).
      estimator: one of ``"k1"``, ``"k2"``, ``"k3"``.
    Returns:
      (``[B, T]`` matrix, 0 at masked tokens; ``{objective/ref_kl_<estimator>: mean estimate}``).
    """
    beta = check_scalar(coef, "coef", nonnegative=True)
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; known: {', '.join(KL_ESTIMATORS)}")
    _check_token_tensor(log_prob, "log_prob")
    _check_token_tensor(ref_log_prob, "ref_log_prob")
    check_same_shape(log_prob, ref_log_prob, "log_prob", "ref_log_prob")
    m = _check_token_mask(mask, log_prob)
    dtype = compute_dtype(log_prob, ref_log_prob)
    zero = torch.zeros(log_prob.shape, dtype=dtype, device=log_prob.device)
    delta = torch.where(m, ref_log_prob.detach().to(dtype) - log_prob.to(dtype), zero)
    if estimator == "k1":
        k = -delta
    elif estimator == "k2":
        k = 0.5 * delta**2
    else:
        d = torch.clamp(delta, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        k = torch.exp(d) - 1.0 - d
    k = torch.where(m, k, zero)
    key = {"k1": METRIC_REF_KL_K1, "k2": METRIC_REF_KL_K2, "k3": METRIC_REF_KL_K3}[estimator]
    return beta * k, {key: k.detach().sum() / m.sum().clamp_min(1).to(dtype)}


__all__ = ["entropy_bonus", "reference_kl"]
