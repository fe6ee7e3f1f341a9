"""Token-level surrogate objectives shared by the simulators and the LLM trainer (paper §4.2).

Every registered objective has one signature (the contract callers rely on)::

    fn(log_prob, old_log_prob, advantages, mask, *, <hyperparameters>, generator=None, stats=None)
        -> (loss_matrix, metrics)

- ``log_prob`` ``[B, T]``: log π_θ(y_t | y_<t) of the sampled tokens, differentiable.
- ``old_log_prob`` ``[B, T]``: log π_old of the same tokens (treated as a constant: detached).
- ``advantages`` ``[B, T]``: A_t per token (treated as a constant: detached).
- ``mask`` ``[B, T]``: bool or 0/1, True for response tokens that count.
- ``loss_matrix`` ``[B, T]``: the per-token loss to *minimise* (0, with zero gradient, at masked
  tokens), float32 (float64 if an input is float64). Reduce it with
  :func:`theory.aggregation.aggregate`.
- ``metrics``: ``{name: 0-dim detached tensor}`` keyed by the ``METRIC_*`` constants of
  :mod:`theory.objective_metrics`, re-exported here (never ``.item()``: call ``float()`` when
  logging, outside the hot loop).

All of them use the importance ratio ρ = exp(clamp(log π_θ − log π_old, −20, 20)) (the clamp, as in
verl's ``vanilla`` loss, prevents overflow; the official Clip-Cov/KL-Cov code does not clamp, which only
differs when |log ρ| > 20). Nothing inside synchronises with the host (no ``.item()``, ``.cpu()`` or
Python branching on tensor values), so the same code runs on GPU; NaN/inf input checks, which would
need a sync, are done for CPU tensors only.

**Selection scope (Clip-Cov / KL-Cov).** The covariance means, the candidate set and the token quota
are computed over *every token passed in*. The paper means the whole training batch; verl and the
official repo use each micro-batch on each GPU (ecosystem.md §1.7). To select over a mini-batch that
is processed in micro-batches, call :func:`compute_cov_stats` (:mod:`theory.cov_selection`,
re-exported here) once on the whole mini-batch (current log-probs from a no-grad forward; all-gathered
across data-parallel ranks if sharded), then pass ``stats=stats.rows(idx)`` with each micro-batch and aggregate with the whole-batch denominators
(:func:`theory.aggregation.global_counts`): the micro-batch losses then sum to the whole-batch loss, and
their gradients to its gradient.

**Additive terms.** :func:`entropy_bonus` and :func:`reference_kl` (:mod:`theory.regularizers`,
re-exported here) return loss matrices of the same shape, added to the objective's matrix before
aggregating; aggregation is linear, so this equals verl's ``agg(L) − α·agg(H) + β·agg(KL)``.
"""

from __future__ import annotations

import torch

from ._surrogate import _check_eps, _ppo_terms, _prepare, _ratio
from .cov_selection import (
    CovStats,
    _check_stats,
    _clip_cov_core,
    _clip_cov_hparams,
    _cov_scores,
    _kl_cov_core,
    _kl_cov_hparams,
    _moments,
    compute_cov_stats,
)
from .objective_metrics import (
    KL_ESTIMATORS,
    LOG_RATIO_CLAMP,
    MAX_UNGUARDED_RATIO,
    METRIC_DESCRIPTIONS,
    METRIC_APPROX_KL,
    METRIC_CANDIDATE_FRAC,
    METRIC_CLIP_FRAC,
    METRIC_CLIP_FRAC_HIGH,
    METRIC_CLIP_FRAC_LOW,
    METRIC_COV_MEAN,
    METRIC_COV_SELECTED_MEAN,
    METRIC_ENTROPY,
    METRIC_KL_PENALTY,
    METRIC_NUM_TOKENS,
    METRIC_PPO_KL,
    METRIC_REF_KL_K1,
    METRIC_REF_KL_K2,
    METRIC_REF_KL_K3,
    METRIC_SELECTED_COUNT,
    METRIC_SELECTED_FRAC,
    _clip_metrics,
    _common_metrics,
    _frac,
    _selection_metrics,
)
from .objective_registry import (
    KNOWN_OBJECTIVES,
    OBJECTIVES,
    ObjectiveFn,
    ObjectiveName,
    get_objective,
    register_objective,
)
from .regularizers import entropy_bonus, reference_kl


# ----------------------------------------------------------------------------------------------------
# objectives (no host synchronisation below this line)
# ----------------------------------------------------------------------------------------------------


@register_objective(ObjectiveName.VANILLA_PG)
def vanilla_pg(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    stats: CovStats | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unclipped importance-weighted policy gradient: L_t = −A_t ρ_t, ρ_t = π_θ(y_t)/π_old(y_t).

    At ρ ≡ 1 (on-policy) its gradient is REINFORCE's, −A_t ∇log π_θ(y_t) (paper Eq. 2/Eq. 4 with
    no clip). ``generator`` is unused; ``stats`` only supplies global means for the cov metric.

    Args:
      log_prob, old_log_prob, advantages: ``[B, T]`` float; mask: ``[B, T]`` bool or 0/1.
    Returns:
      (loss_matrix ``[B, T]``, metrics) as described in the module docstring.
    """
    lp, old, adv, m = _prepare(log_prob, old_log_prob, advantages, mask)
    stats = _check_stats(stats, lp)
    ratio = _ratio(lp, old)
    loss = torch.where(m, -adv * ratio, torch.zeros_like(ratio))
    mean_lp, mean_adv, n = _moments(lp, adv, m, stats)
    cov = _cov_scores(lp, adv, m, mean_lp, mean_adv)
    return loss, _common_metrics(ratio, lp, old, m, n, cov)


@register_objective(ObjectiveName.PPO_CLIP)
def ppo_clip(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    generator: torch.Generator | None = None,
    stats: CovStats | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (paper Eq. 4), as a loss to minimise:

        L_t = max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε_low, 1 + ε_high)),   ρ_t = exp(clamp(log ρ_t, ±20)).

    ``eps_high > eps_low`` is DAPO's clip-higher (see :func:`clip_higher`). The clip is active (zero
    gradient) when A > 0 and ρ > 1 + ε_high or A < 0 and ρ < 1 − ε_low (theory.md §1.10).

    Args:
      log_prob, old_log_prob, advantages: ``[B, T]`` float; mask: ``[B, T]`` bool or 0/1.
      eps_low: ε_low in [0, 1]; eps_high: ε_high >= 0.
      generator: unused. stats: only supplies global means for the cov metric.
    Returns:
      (loss_matrix ``[B, T]``, metrics incl. clip_frac_low/high).
    """
    lo, hi = _check_eps(eps_low, eps_high)
    lp, old, adv, m = _prepare(log_prob, old_log_prob, advantages, mask)
    stats = _check_stats(stats, lp)
    ratio = _ratio(lp, old)
    ppo, c_low, c_high = _ppo_terms(ratio, adv, m, lo, hi)
    loss = torch.where(m, ppo, torch.zeros_like(ppo))
    mean_lp, mean_adv, n = _moments(lp, adv, m, stats)
    cov = _cov_scores(lp, adv, m, mean_lp, mean_adv)
    metrics = _common_metrics(ratio, lp, old, m, n, cov)
    metrics.update(_clip_metrics(c_low, c_high, n, lp.dtype))
    return loss, metrics


@register_objective(ObjectiveName.CLIP_HIGHER)
def clip_higher(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    generator: torch.Generator | None = None,
    stats: CovStats | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DAPO clip-higher: :func:`ppo_clip` with ε_high = 0.28 > ε_low = 0.2 by default (paper §4.5).

    Args/Returns: as :func:`ppo_clip`.
    """
    return ppo_clip(log_prob, old_log_prob, advantages, mask, eps_low=eps_low, eps_high=eps_high,
                    generator=generator, stats=stats)


@register_objective(ObjectiveName.CLIP_COV)
def clip_cov(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_ratio: float = 2e-4,
    cov_lb: float = 1.0,
    cov_ub: float = 5.0,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    allow_large_ratio: bool = False,
    generator: torch.Generator | None = None,
    stats: CovStats | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clip-Cov (paper §4.2, Eqs. 11–12; semantics of the reference code, ecosystem.md §1.3):

        Cov_i  = (A_i − Ā)(log π_θ(y_i) − mean log π_θ)          (Eq. 10, masked means, detached)
        cand   = {i unmasked, PPO clip not active at i, cov_lb < Cov_i < cov_ub}
        I_clip = uniform random subset of cand of size min(max(1, ⌊r·N⌋), |cand|)
        L_i    = 0 if i ∈ I_clip else max(−A_i ρ_i, −A_i clip(ρ_i, 1 − ε_low, 1 + ε_high))

    N = unmasked tokens in the scope. Selected tokens have loss and gradient exactly 0 but still count
    in the token-mean denominator (aggregate with the usual mask). The random choice draws one U(0,1)
    key per token from ``generator`` and keeps the k largest among candidates (no host sync).

    Args:
      log_prob, old_log_prob, advantages: ``[B, T]`` float; mask: ``[B, T]`` bool or 0/1.
      clip_ratio: r, a fraction in [0, 1] (> 0.05 needs ``allow_large_ratio``).
      cov_lb, cov_ub: strict bounds ω_low < ω_high on Cov_i (absolute units of A·log π).
      eps_low, eps_high: the PPO clip (the official 7B/32B scripts use 1, 1, i.e. ρ ∈ [0, 2]).
      generator: ``torch.Generator`` for the random choice (global RNG if None).
      stats: :class:`CovStats` of the whole scope; ``stats.selected`` (if set) replaces the selection.
    Returns:
      (loss_matrix ``[B, T]``, metrics incl. selected_count/frac, candidate_frac, clip fractions).
    """
    h = _clip_cov_hparams(clip_ratio, cov_lb, cov_ub, eps_low, eps_high, allow_large_ratio)
    lp, old, adv, m = _prepare(log_prob, old_log_prob, advantages, mask)
    r = _clip_cov_core(lp, old, adv, m, h, _check_stats(stats, lp), generator)
    sel = r.sel
    loss = torch.where(m & ~sel.selected, r.ppo, torch.zeros_like(r.ppo))
    metrics = _common_metrics(r.ratio, lp, old, m, sel.num_tokens, sel.cov)
    metrics.update(_clip_metrics(r.clipped_low, r.clipped_high, sel.num_tokens, lp.dtype))
    metrics[METRIC_CANDIDATE_FRAC] = _frac(sel.candidates, sel.num_tokens, lp.dtype)
    metrics.update(_selection_metrics(sel.selected, sel.cov, sel.num_tokens, lp.dtype))
    return loss, metrics


@register_objective(ObjectiveName.KL_COV)
def kl_cov(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    kl_ratio: float = 2e-3,
    kl_coef: float = 1.0,
    allow_large_ratio: bool = False,
    generator: torch.Generator | None = None,
    stats: CovStats | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KL-Cov (paper §4.2, Eqs. 13–14; semantics of the reference code, ecosystem.md §1.4):

        Cov_i = (A_i − Ā)(log π_θ(y_i) − mean log π_θ)           (Eq. 10, masked means, detached)
        I_KL  = the max(1, ⌊k·N⌋) unmasked tokens with the largest Cov_i
        L_i   = −A_i ρ_i + [i ∈ I_KL] · β |log π_θ(y_i) − log π_old(y_i)|

    No PPO clipping at all. At ρ ≡ 1 the penalty and its (sub)gradient are 0, so on-policy KL-Cov is
    exactly vanilla −Aρ (ecosystem.md §1.4); it only acts off-policy. Ties in Cov are broken by
    position. Paper defaults: k = 2e-3 (7B), 2e-4 (32B), β = 1 (verl's default β is 0.1).

    Args:
      log_prob, old_log_prob, advantages: ``[B, T]`` float; mask: ``[B, T]`` bool or 0/1.
      kl_ratio: k, a fraction in [0, 1] (> 0.05 needs ``allow_large_ratio``).
      kl_coef: β >= 0.
      generator: unused (the selection is deterministic).
      stats: :class:`CovStats` of the whole scope; ``stats.selected`` (if set) replaces the selection.
    Returns:
      (loss_matrix ``[B, T]``, metrics incl. selected_count/frac and kl_penalty).
    """
    h = _kl_cov_hparams(kl_ratio, kl_coef, allow_large_ratio)
    lp, old, adv, m = _prepare(log_prob, old_log_prob, advantages, mask)
    sel = _kl_cov_core(lp, adv, m, h, _check_stats(stats, lp))
    ratio = _ratio(lp, old)
    zero = torch.zeros_like(ratio)
    penalty = torch.where(sel.selected, h["kl_coef"] * torch.abs(lp - old), zero)
    loss = torch.where(m, -adv * ratio + penalty, zero)
    n = sel.num_tokens
    metrics = _common_metrics(ratio, lp, old, m, n, sel.cov)
    metrics.update(_selection_metrics(sel.selected, sel.cov, n, lp.dtype))
    metrics[METRIC_KL_PENALTY] = penalty.detach().sum() / n.clamp_min(1).to(lp.dtype)
    return loss, metrics


__all__ = [
    "CovStats",
    "KL_ESTIMATORS",
    "KNOWN_OBJECTIVES",
    "LOG_RATIO_CLAMP",
    "MAX_UNGUARDED_RATIO",
    "METRIC_DESCRIPTIONS",
    "METRIC_APPROX_KL",
    "METRIC_CANDIDATE_FRAC",
    "METRIC_CLIP_FRAC",
    "METRIC_CLIP_FRAC_HIGH",
    "METRIC_CLIP_FRAC_LOW",
    "METRIC_COV_MEAN",
    "METRIC_COV_SELECTED_MEAN",
    "METRIC_ENTROPY",
    "METRIC_KL_PENALTY",
    "METRIC_NUM_TOKENS",
    "METRIC_PPO_KL",
    "METRIC_REF_KL_K1",
    "METRIC_REF_KL_K2",
    "METRIC_REF_KL_K3",
    "METRIC_SELECTED_COUNT",
    "METRIC_SELECTED_FRAC",
    "OBJECTIVES",
    "ObjectiveFn",
    "ObjectiveName",
    "clip_cov",
    "clip_higher",
    "compute_cov_stats",
    "entropy_bonus",
    "get_objective",
    "kl_cov",
    "ppo_clip",
    "reference_kl",
    "register_objective",
    "vanilla_pg",
]
