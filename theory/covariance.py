"""The batch covariance of paper Eq. 10 — what Clip-Cov and KL-Cov rank tokens by — and its
decomposition into within-state and between-state parts (docs/theory.md §1.9).

Shapes: ``log_probs``, ``advantages`` and ``mask`` are token-level ``[B, T]`` (any shape works; means
are over every unmasked entry passed in).
"""

from __future__ import annotations

import torch

from ._checks import check_float_tensor, check_mask, check_same_shape, compute_dtype
from .aggregation import masked_mean


def token_covariance(log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token centred products of paper Eq. 10:

        Cov(y_i) = (log π(y_i) − mean_j log π(y_j)) · (A_i − mean_j A_j),

    with means over the unmasked tokens. Their mean is the (biased, (N−1)/N) sample estimate of the
    NPG covariance Cov_π(ℓ, A) of Theorem 2 — not the PG covariance of Theorem 1 — when every token
    shares one state; across states it pools (see :func:`covariance_decomposition`).

    Args:
      log_probs: ``[B, T]`` log π of the sampled tokens (masked entries may be anything finite).
      advantages: ``[B, T]``; mask: ``[B, T]`` bool or 0/1.
    Returns:
      ``[B, T]`` products, exactly 0 at masked tokens. Gradients are not blocked (detach if needed).
    """
    check_float_tensor(log_probs, "log_probs")
    check_float_tensor(advantages, "advantages")
    check_same_shape(log_probs, advantages, "log_probs", "advantages")
    m = check_mask(mask, log_probs)
    dtype = compute_dtype(log_probs, advantages)
    lp, adv, mf = log_probs.to(dtype), advantages.to(dtype), m.to(dtype)
    lp = torch.where(m, lp, torch.zeros_like(lp))
    adv = torch.where(m, adv, torch.zeros_like(adv))
    cov = (lp - masked_mean(lp, m)) * (adv - masked_mean(adv, m))  # all-masked: means are 0, no error
    return cov * mf


def covariance_decomposition(
    log_probs: torch.Tensor, advantages: torch.Tensor, state_ids: torch.Tensor,
    weights: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Law of total covariance for a batch of samples pooled over states (docs/theory.md §1.9 item 3):

        Cov_pooled(ℓ, A) = E_s[Cov(ℓ, A | s)] + Cov_s(E[ℓ | s], E[A | s]),

    with every moment taken under the empirical (optionally ``weights``-weighted) distribution of the
    batch. The between-state term has nothing to do with Lemma 1; the within-state term is what the
    per-state theory speaks about.

    Args:
      log_probs, advantages: ``[N]`` per-sample values; state_ids: integer ``[N]`` state labels;
      weights: optional non-negative ``[N]`` sample weights (default uniform).
    Returns:
      dict with scalar tensors ``pooled``, ``within``, ``between`` (pooled == within + between) and
      ``per_state`` ``[S]`` within-state covariances, S = max(state_ids) + 1 (0 for absent states).
    """
    check_float_tensor(log_probs, "log_probs", min_dim=1)
    check_float_tensor(advantages, "advantages", min_dim=1)
    check_same_shape(log_probs, advantages, "log_probs", "advantages")
    if log_probs.dim() != 1:
        raise ValueError("covariance_decomposition expects flat [N] inputs; flatten the batch first")
    if not isinstance(state_ids, torch.Tensor) or state_ids.dtype not in (torch.int32, torch.int64):
        raise ValueError("state_ids must be an integer torch.Tensor")
    check_same_shape(state_ids, log_probs, "state_ids", "log_probs")
    if (state_ids < 0).any():
        raise ValueError("state_ids must be non-negative")
    dtype = compute_dtype(log_probs, advantages)
    lp, adv = log_probs.to(dtype), advantages.to(dtype)
    w = torch.ones_like(lp) if weights is None else check_float_tensor(weights, "weights").to(dtype)
    check_same_shape(w, lp, "weights", "log_probs")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    w = w / w.sum()
    ids = state_ids.long()
    n_states = int(ids.max()) + 1

    def seg(x):  # Σ_{i in s} x_i                                                     [S]
        return torch.zeros(n_states, dtype=dtype, device=lp.device).index_add_(0, ids, x)

    p_s = seg(w)
    safe = p_s.clamp_min(torch.finfo(dtype).tiny)
    mean_lp_s, mean_adv_s = seg(w * lp) / safe, seg(w * adv) / safe
    lp_c, adv_c = lp - mean_lp_s[ids], adv - mean_adv_s[ids]
    per_state = torch.where(p_s > 0, seg(w * lp_c * adv_c) / safe, torch.zeros_like(p_s))
    within = (p_s * per_state).sum()
    mlp, madv = (w * lp).sum(), (w * adv).sum()
    between = (p_s * (mean_lp_s - mlp) * (mean_adv_s - madv)).sum()
    pooled = (w * (lp - mlp) * (adv - madv)).sum()
    return {"pooled": pooled, "within": within, "between": between, "per_state": per_state}
