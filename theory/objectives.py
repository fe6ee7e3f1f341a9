"""Token-level surrogate objectives of the simulators and the LLM trainer (paper §4.2): vanilla PG, PPO-clip,
clip-higher, Clip-Cov and KL-Cov, built from the per-token pieces of :mod:`theory.surrogate` and registered in
:mod:`theory.objective_registry` (re-exported here: :data:`OBJECTIVES`, :func:`validate_objective_params`, the
``METRIC_*`` names). Every objective has one signature (the contract callers rely on)::

    fn(log_prob, old_log_prob, advantages, mask, *, <hyperparameters>, generator=None, stats=None)
        -> (loss_matrix, metrics)

- ``log_prob`` ``[B, T]``: log π_θ(y_t | y_<t) of the sampled tokens, differentiable.
- ``old_log_prob``, ``advantages`` ``[B, T]``: log π_old of the same tokens and A_t (detached).
- ``mask`` ``[B, T]``: bool or 0/1, True for response tokens that count.
- ``loss_matrix`` ``[B, T]``: the per-token loss to *minimise* (0, with zero gradient, at masked tokens),
  float32 (float64 if an input is float64); reduce it with :func:`theory.aggregation.aggregate`.
- ``metrics``: ``{METRIC_*: 0-dim detached tensor}`` (never ``.item()``: call ``float()`` when logging).

All use ρ = exp(clamp(log π_θ − log π_old, ±20)) (verl's ``vanilla`` clamp; the official Clip-Cov/KL-Cov
code does not clamp, which only differs when |log ρ| > 20). Nothing synchronises with the host, so the
same code runs on GPU. Clip-Cov/KL-Cov select over every token passed in; for a mini-batch processed in
micro-batches pass ``stats=compute_cov_stats(whole mini-batch).rows(idx)`` (:mod:`theory.cov_selection`).
The additive terms of :mod:`theory.regularizers` (entropy bonus, reference KL; metrics named here) are
added to the loss matrix before aggregating, i.e. verl's ``agg(L) − α·agg(H) + β·agg(KL)``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch

from ._checks import Hyperparameter, host_readable
from .aggregation import _masked_zero
from .cov_selection import (CovStats, Selection, _prepare, centred_products, clip_cov_selection,
                            kl_cov_selection, scope_moments, scope_stats)
# the names of the built-in objectives and of the reference-KL estimators (theory.regularizers) live in
# theory.names (torch-free, for configs and --help)
from .names import KL_ESTIMATORS, KNOWN_OBJECTIVES, MAX_UNGUARDED_RATIO, ObjectiveName
from .objective_registry import (_CLIP, _COMMON, _RANGES, _SELECTION, METRIC_ABS_LOG_RATIO,
                                 METRIC_APPROX_KL, METRIC_CANDIDATE_FRAC, METRIC_CLIP_FRAC,
                                 METRIC_CLIP_FRAC_HIGH, METRIC_CLIP_FRAC_LOW, METRIC_COV_MEAN,
                                 METRIC_COV_SELECTED_MEAN, METRIC_DESCRIPTIONS, METRIC_ENTROPY,
                                 METRIC_KL_PENALTY, METRIC_NUM_TOKENS, METRIC_PPO_KL, METRIC_REF_KL_K1,
                                 METRIC_REF_KL_K2, METRIC_REF_KL_K3, METRIC_SELECTED_COUNT,
                                 METRIC_SELECTED_FRAC, OBJECTIVES, ObjectiveFn, ObjectiveSpec,
                                 _check_values, get_objective, objective_spec, register_objective,
                                 validate_objective_params)
from .surrogate import LOG_RATIO_CLAMP, clip_counts, log_ratio, ppo_terms, ratio_derivative, with_gradient


# -- building blocks (no host synchronisation below this line) ---------------------------------------

Loss = tuple[torch.Tensor, dict[str, torch.Tensor]]


class _Tokens(NamedTuple):
    """One objective call's prepared tensors (:func:`theory.cov_selection.prepare_tokens`, lp detached).

    At a masked token A = 0, d = c = 0 and ρ = 1, so every per-token term the objectives build from these
    (−Aρ, the PPO max, β|d|, their derivatives) is already 0 there: no objective masks its loss again."""

    x: torch.Tensor        # log π_θ in the compute dtype, with its graph (the gradient attaches here)
    lp: torch.Tensor       # detached log π_θ, = old at masked tokens
    old: torch.Tensor      # log π_old, 0 at masked tokens
    adv: torch.Tensor      # A, 0 at masked tokens
    m: torch.Tensor        # bool mask
    stats: CovStats | None
    d: torch.Tensor        # log π_θ − log π_old (0 at masked tokens)
    c: torch.Tensor        # clamp(d, ±LOG_RATIO_CLAMP) = log ρ
    ratio: torch.Tensor    # ρ = exp(c)


def _inputs(log_prob, old_log_prob, advantages, mask, stats) -> _Tokens:
    """The checked, cast, masked tensors of one call and the ratio (:func:`theory.surrogate.log_ratio`)."""
    x, lp, old, adv, m, stats = _prepare(log_prob, old_log_prob, advantages, mask, stats, detach=True)
    return _Tokens(x, lp, old, adv, m, stats, *log_ratio(lp, old))


def _metrics(t: _Tokens, clip=None, sel: Selection | None = None, candidates=False, sums=None):
    """The _COMMON metrics (Eq. 10 scores of ``sel``, else from the scope means); the _CLIP ones if
    ``clip`` = (#low, #high) clip counts; METRIC_CANDIDATE_FRAC if ``candidates``; the _SELECTION ones if
    ``sel``; ``sums``: {metric: 0-dim sum over tokens} reported as means (÷ max(N, 1)). All the means come
    out of one division (a few 0-dim ops instead of three per metric)."""
    if sel is None:
        mean_lp, mean_adv, n = scope_moments(t.lp, t.adv, t.m, t.stats)
        cov = centred_products(t.lp, t.adv, t.m, mean_lp, mean_adv)
    else:
        n, cov = sel.num_tokens, sel.cov
    # at masked tokens d = c = 0 and ρ = 1, so every summand below is 0 there; log ρ = c exactly (ρ = exp(c))
    # and Σ(log π_old − log π) = −Σd exactly
    names = [METRIC_COV_MEAN, METRIC_APPROX_KL, METRIC_PPO_KL, *(sums or {})]
    values = [cov.sum(), (t.ratio - 1.0 - t.c).sum(), -t.d.sum(), *(sums or {}).values()]
    counts = []
    if clip is not None:   # the low and high clips are disjoint (ρ < 1 − ε_low <= 1 <= 1 + ε_high < ρ)
        low, high = clip
        names += _CLIP
        counts += [low, high, low + high]
    if candidates:
        names.append(METRIC_CANDIDATE_FRAC)
        counts.append(torch.count_nonzero(sel.candidates))
    if sel is not None:
        count = torch.count_nonzero(sel.selected)
        names.append(METRIC_SELECTED_FRAC)
        counts.append(count)
    d = n.clamp_min(1)            # int64: dividing a float tensor by it promotes it exactly (N < 2²⁴)
    parts = [torch.stack(values), torch.stack(counts)] if counts else [torch.stack(values)]
    out = dict(zip(names, (torch.cat(parts) / d).unbind()))   # cat promotes the counts to the floats' dtype
    out[METRIC_NUM_TOKENS] = n
    if sel is not None:
        out[METRIC_SELECTED_COUNT] = count
        selected_cov = _masked_zero(cov, sel.selected, finite=True).sum()   # cov is finite where masked
        out[METRIC_COV_SELECTED_MEAN] = selected_cov / count.clamp_min(1)
    order = (*_COMMON, *_CLIP, METRIC_CANDIDATE_FRAC, *_SELECTION, *(sums or {}))   # the registered order
    return {k: out[k] for k in order if k in out}


def _select_clip_cov(h, lp, old, adv, m, generator, stats=None, clipped=None) -> Selection:
    """Clip-Cov's selection (its registry hook too): candidates exclude the tokens PPO already clips."""
    if clipped is None:
        clipped = ppo_terms(log_ratio(lp, old)[2], -adv, h["eps_low"], h["eps_high"])[2]
    return clip_cov_selection(lp, adv, m, clipped, clip_ratio=h["clip_ratio"], cov_lb=h["cov_lb"],
                              cov_ub=h["cov_ub"], stats=stats, generator=generator)


def _select_kl_cov(h, lp, old, adv, m, generator, stats=None) -> Selection:
    """KL-Cov's selection (its registry hook too; deterministic: ``generator`` is unused)."""
    return kl_cov_selection(lp, adv, m, kl_ratio=h["kl_ratio"], stats=stats)


# -- objectives ---------------------------------------------------------------------------------------


@register_objective(ObjectiveName.VANILLA_PG, metrics=_COMMON)
def vanilla_pg(log_prob, old_log_prob, advantages, mask, *, generator: torch.Generator | None = None,
               stats: CovStats | None = None) -> Loss:
    """Unclipped importance-weighted policy gradient: L_t = −A_t ρ_t, ρ_t = π_θ(y_t)/π_old(y_t).

    At ρ ≡ 1 (on-policy) its gradient is REINFORCE's, −A_t ∇log π_θ(y_t) (paper Eq. 2/Eq. 4 with no
    clip). Args: log_prob, old_log_prob, advantages ``[B, T]`` float; mask ``[B, T]`` bool or 0/1;
    ``generator`` unused; ``stats`` only supplies global means for the cov metric. Returns
    (loss_matrix ``[B, T]``, metrics) as described in the module docstring.
    """
    t = _inputs(log_prob, old_log_prob, advantages, mask, stats)
    pg = -t.adv * t.ratio
    return with_gradient(t.x, pg, ratio_derivative(t.d, pg)), _metrics(t)


@register_objective(ObjectiveName.PPO_CLIP, metrics=_COMMON + _CLIP)
def ppo_clip(log_prob, old_log_prob, advantages, mask, *, eps_low: float = 0.2, eps_high: float = 0.2,
             generator: torch.Generator | None = None, stats: CovStats | None = None) -> Loss:
    """PPO clipped surrogate (paper Eq. 4), as a loss to minimise:

        L_t = max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε_low, 1 + ε_high)),   ρ_t = exp(clamp(log ρ_t, ±20)).

    ``eps_high > eps_low`` is DAPO's clip-higher (see :func:`clip_higher`). The clip is active (zero
    gradient) when A > 0 and ρ > 1 + ε_high or A < 0 and ρ < 1 − ε_low (docs/theory.md §1.10).

    Args:
      log_prob, old_log_prob, advantages: ``[B, T]`` float; mask: ``[B, T]`` bool or 0/1.
      eps_low: ε_low in [0, 1]; eps_high: ε_high >= 0.
      generator: unused. stats: only supplies global means for the cov metric.
    Returns:
      (loss_matrix ``[B, T]``, metrics incl. clip_frac_low/high).
    """
    h = _check_values(_RANGES, {"eps_low": eps_low, "eps_high": eps_high})
    t = _inputs(log_prob, old_log_prob, advantages, mask, stats)
    neg_adv = -t.adv
    pg1, ppo, clipped = ppo_terms(t.ratio, neg_adv, h["eps_low"], h["eps_high"])
    metrics = _metrics(t, clip_counts(clipped, neg_adv))
    return with_gradient(t.x, ppo, ratio_derivative(t.d, pg1, clipped)), metrics


@register_objective(ObjectiveName.CLIP_HIGHER, metrics=_COMMON + _CLIP)
def clip_higher(log_prob, old_log_prob, advantages, mask, *, eps_low: float = 0.2, eps_high: float = 0.28,
                generator: torch.Generator | None = None, stats: CovStats | None = None) -> Loss:
    """DAPO clip-higher: :func:`ppo_clip` with ε_high = 0.28 > ε_low = 0.2 by default (paper §4.5).
    Args/Returns: as :func:`ppo_clip`."""
    return ppo_clip(log_prob, old_log_prob, advantages, mask, eps_low=eps_low, eps_high=eps_high,
                    generator=generator, stats=stats)


@register_objective(ObjectiveName.CLIP_COV, metrics=_COMMON + _CLIP + (METRIC_CANDIDATE_FRAC,) + _SELECTION,
                    select=_select_clip_cov)
def clip_cov(log_prob, old_log_prob, advantages, mask, *, clip_ratio: float = 2e-4, cov_lb: float = 1.0,
             cov_ub: float = 5.0, eps_low: float = 0.2, eps_high: float = 0.2,
             allow_large_ratio: bool = False, generator: torch.Generator | None = None,
             stats: CovStats | None = None) -> Loss:
    """Clip-Cov (paper §4.2, Eqs. 11–12; semantics of the reference code, docs/ecosystem.md §1.3):

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
    h = _check_values(_RANGES, dict(clip_ratio=clip_ratio, cov_lb=cov_lb, cov_ub=cov_ub, eps_low=eps_low,
                                    eps_high=eps_high, allow_large_ratio=allow_large_ratio))
    t = _inputs(log_prob, old_log_prob, advantages, mask, stats)
    neg_adv = -t.adv
    pg1, ppo, clipped = ppo_terms(t.ratio, neg_adv, h["eps_low"], h["eps_high"])
    sel = _select_clip_cov(h, t.lp, t.old, t.adv, t.m, generator, t.stats, clipped=clipped)
    value = _masked_zero(ppo, ~sel.selected, finite=host_readable(t.x))   # checked CPU inputs: finite
    derivative = ratio_derivative(t.d, pg1, clipped | sel.selected)
    metrics = _metrics(t, clip_counts(clipped, neg_adv), sel, candidates=True)
    return with_gradient(t.x, value, derivative), metrics


@register_objective(ObjectiveName.KL_COV,
                    metrics=_COMMON + _SELECTION + (METRIC_KL_PENALTY, METRIC_ABS_LOG_RATIO),
                    select=_select_kl_cov)
def kl_cov(log_prob, old_log_prob, advantages, mask, *, kl_ratio: float = 2e-3, kl_coef: float = 1.0,
           allow_large_ratio: bool = False, generator: torch.Generator | None = None,
           stats: CovStats | None = None) -> Loss:
    """KL-Cov (paper §4.2, Eqs. 13–14; semantics of the reference code, docs/ecosystem.md §1.4):

        Cov_i = (A_i − Ā)(log π_θ(y_i) − mean log π_θ)           (Eq. 10, masked means, detached)
        I_KL  = the max(1, ⌊k·N⌋) unmasked tokens with the largest Cov_i
        L_i   = −A_i ρ_i + [i ∈ I_KL] · β |log π_θ(y_i) − log π_old(y_i)|

    No PPO clipping at all. At ρ ≡ 1 the penalty and its (sub)gradient are 0, so on-policy KL-Cov is
    exactly vanilla −Aρ (docs/ecosystem.md §1.4); it only acts off-policy. Ties in Cov are broken by
    position. Paper defaults: k = 2e-3 (7B), 2e-4 (32B), β = 1 (verl's default β is 0.1).

    Args:
      log_prob, old_log_prob, advantages: ``[B, T]`` float; mask: ``[B, T]`` bool or 0/1.
      kl_ratio: k, a fraction in [0, 1] (> 0.05 needs ``allow_large_ratio``). kl_coef: β >= 0.
      generator: unused (the selection is deterministic).
      stats: :class:`CovStats` of the whole scope; ``stats.selected`` (if set) replaces the selection.
    Returns:
      (loss_matrix ``[B, T]``, metrics incl. selected_count/frac and kl_penalty).
    """
    h = _check_values(_RANGES, dict(kl_ratio=kl_ratio, kl_coef=kl_coef, allow_large_ratio=allow_large_ratio))
    t = _inputs(log_prob, old_log_prob, advantages, mask, stats)
    sel = _select_kl_cov(h, t.lp, t.old, t.adv, t.m, generator, t.stats)
    abs_d = t.d.abs()
    # ∂(β|d|)/∂d = β sign(d) on the selected tokens, and β|d| = (β sign(d))·d exactly (a product by ±1, 0)
    penalty_derivative = _masked_zero(h["kl_coef"] * torch.sign(t.d), sel.selected, finite=True)
    penalty = penalty_derivative * t.d
    metrics = _metrics(t, sel=sel, sums={METRIC_KL_PENALTY: penalty.sum(), METRIC_ABS_LOG_RATIO: abs_d.sum()})
    pg = -t.adv * t.ratio
    derivative = ratio_derivative(t.d, pg, abs_d=abs_d) + penalty_derivative
    return with_gradient(t.x, pg + penalty, derivative), metrics


def compute_cov_stats(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                      mask: torch.Tensor, *, objective: str | ObjectiveName,
                      generator: torch.Generator | None = None, **hyperparameters) -> CovStats:
    """Global :class:`CovStats` of a whole mini-batch ``[B, T]`` for micro-batched calls of ``objective``
    (the selection scope of :mod:`theory.cov_selection`): its selection hook under ``torch.no_grad``, so
    ``objective(full batch, generator=g)`` and ``objective(micro-batch j, stats=compute_cov_stats(full
    batch, generator=g).rows(j))`` pick the same tokens (an objective without a hook: the means and N only).
    ``log_prob`` must be the *current* policy's (a no-grad forward; recompute after every optimiser step:
    Clip-Cov's candidates exclude tokens PPO already clips); across data-parallel ranks, pass the
    all-gathered tensors. ``generator``: Clip-Cov's random choice (on the tensors' device);
    ``**hyperparameters``: the objective's own (the same dict it gets). ValueError: unknown objective, a
    keyword it does not take, or a bad value."""
    spec = objective_spec(objective)
    h = spec.validate(hyperparameters)
    select = None if spec.select is None else partial(spec.select, h)
    return scope_stats(log_prob, old_log_prob, advantages, mask, select=select, generator=generator)


# the registry's names (theory.objective_registry) are re-exported: callers import them from here
__all__ = [
    "CovStats", "Hyperparameter", "KL_ESTIMATORS", "KNOWN_OBJECTIVES", "LOG_RATIO_CLAMP",
    "MAX_UNGUARDED_RATIO", "METRIC_ABS_LOG_RATIO", "METRIC_APPROX_KL", "METRIC_CANDIDATE_FRAC",
    "METRIC_CLIP_FRAC", "METRIC_CLIP_FRAC_HIGH", "METRIC_CLIP_FRAC_LOW", "METRIC_COV_MEAN",
    "METRIC_COV_SELECTED_MEAN", "METRIC_DESCRIPTIONS", "METRIC_ENTROPY", "METRIC_KL_PENALTY",
    "METRIC_NUM_TOKENS", "METRIC_PPO_KL", "METRIC_REF_KL_K1", "METRIC_REF_KL_K2", "METRIC_REF_KL_K3",
    "METRIC_SELECTED_COUNT", "METRIC_SELECTED_FRAC", "OBJECTIVES", "ObjectiveFn", "ObjectiveName",
    "ObjectiveSpec", "clip_cov", "clip_higher", "compute_cov_stats", "get_objective", "kl_cov",
    "objective_spec", "ppo_clip", "register_objective", "validate_objective_params", "vanilla_pg",
]
