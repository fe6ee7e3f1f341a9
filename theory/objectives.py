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
- ``metrics``: ``{name: 0-dim detached tensor}`` keyed by the ``METRIC_*`` constants below
  (never ``.item()``: call ``float()`` when logging, outside the hot loop).

All of them use the importance ratio ρ = exp(clamp(log π_θ − log π_old, −20, 20)) (the clamp, as in
verl's ``vanilla`` loss, prevents overflow; the official Clip-Cov/KL-Cov code does not clamp, which only
differs when |log ρ| > 20). Nothing inside synchronises with the host (no ``.item()``, ``.cpu()`` or
Python branching on tensor values), so the same code runs on GPU; NaN/inf input checks, which would
need a sync, are done for CPU tensors only.

**Selection scope (Clip-Cov / KL-Cov).** The covariance means, the candidate set and the token quota
are computed over *every token passed in*. The paper means the whole training batch; verl and the
official repo use each micro-batch on each GPU (ecosystem.md §1.7). To select over a mini-batch that
is processed in micro-batches, call :func:`compute_cov_stats` once on the whole mini-batch (current
log-probs from a no-grad forward; all-gathered across data-parallel ranks if sharded), then pass
``stats=stats.rows(idx)`` with each micro-batch and aggregate with the whole-batch denominators
(:func:`theory.aggregation.global_counts`): the micro-batch losses then sum to the whole-batch loss, and
their gradients to its gradient.

**Additive terms.** :func:`entropy_bonus` and :func:`reference_kl` return loss matrices of the same
shape; the trainer adds them to the objective's matrix before aggregating::

    loss_mat, metrics = get_objective("kl_cov")(logp, old_logp, adv, mask, kl_ratio=2e-3)
    ent_mat, m_ent = entropy_bonus(entropy, mask, coef=1e-3)
    kl_mat, m_kl = reference_kl(logp, ref_logp, mask, coef=1e-3, estimator="k3")
    loss = aggregate(loss_mat + ent_mat + kl_mat, mask, "token-mean")

Aggregation is linear, so this equals verl's ``agg(L) − α·agg(H) + β·agg(KL)`` with one mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import Callable, Protocol

import torch

from ._checks import check_same_shape, check_scalar, compute_dtype
from .aggregation import _check_token_mask, _check_token_tensor

# ----------------------------------------------------------------------------------------------------
# constants
# ----------------------------------------------------------------------------------------------------

#: |log ρ| is clamped to this before ``exp`` (verl ``vanilla``); also used by the k3 estimators.
LOG_RATIO_CLAMP = 20.0
#: token fractions above this raise unless ``allow_large_ratio=True`` (percent-vs-fraction guard).
MAX_UNGUARDED_RATIO = 0.05

# Metric names: every key an objective or additive term can emit. All values are 0-dim detached
# tensors; fractions are over the unmasked tokens of the call.
METRIC_NUM_TOKENS = "objective/num_tokens"
METRIC_CLIP_FRAC_LOW = "objective/clip_frac_low"
METRIC_CLIP_FRAC_HIGH = "objective/clip_frac_high"
METRIC_CLIP_FRAC = "objective/clip_frac"
METRIC_CANDIDATE_FRAC = "objective/candidate_frac"
METRIC_SELECTED_FRAC = "objective/selected_frac"
METRIC_SELECTED_COUNT = "objective/selected_count"
METRIC_COV_MEAN = "objective/cov_mean"
METRIC_COV_SELECTED_MEAN = "objective/cov_selected_mean"
METRIC_APPROX_KL = "objective/approx_kl"
METRIC_PPO_KL = "objective/ppo_kl"
METRIC_KL_PENALTY = "objective/kl_penalty"
METRIC_ENTROPY = "objective/entropy"
METRIC_REF_KL_K1 = "objective/ref_kl_k1"
METRIC_REF_KL_K2 = "objective/ref_kl_k2"
METRIC_REF_KL_K3 = "objective/ref_kl_k3"

#: What each metric is (and which estimator), for README tables and log viewers.
METRIC_DESCRIPTIONS: dict[str, str] = {
    METRIC_NUM_TOKENS: "unmasked tokens in this call (weight for averaging metrics over micro-batches)",
    METRIC_CLIP_FRAC_LOW: "fraction of tokens whose PPO clip is active at 1 − eps_low (A < 0, ρ < 1 − eps_low)",
    METRIC_CLIP_FRAC_HIGH: "fraction of tokens whose PPO clip is active at 1 + eps_high (A > 0, ρ > 1 + eps_high)",
    METRIC_CLIP_FRAC: "fraction of tokens whose PPO clip is active (low + high)",
    METRIC_CANDIDATE_FRAC: "Clip-Cov: fraction of tokens that are candidates (not PPO-clipped, cov_lb < cov < cov_ub)",
    METRIC_SELECTED_FRAC: "fraction of tokens touched by the covariance rule (Clip-Cov: loss zeroed; KL-Cov: penalised)",
    METRIC_SELECTED_COUNT: "number of tokens touched by the covariance rule",
    METRIC_COV_MEAN: "mean over tokens of the Eq. 10 centred product (A − Ā)(log π − mean log π)",
    METRIC_COV_SELECTED_MEAN: "mean Eq. 10 centred product over the selected tokens (0 if none)",
    METRIC_APPROX_KL: "k3 estimate of KL(π_old ‖ π_θ) from tokens sampled by π_old: mean of (ρ − 1) − log ρ",
    METRIC_PPO_KL: "k1 estimate of KL(π_old ‖ π_θ): mean of log π_old − log π_θ (verl actor/ppo_kl)",
    METRIC_KL_PENALTY: "KL-Cov: mean over all tokens of the added kl_coef·|log ρ| (selected tokens only non-zero)",
    METRIC_ENTROPY: "mean per-token entropy H(π_θ(·|y_<t)) passed to entropy_bonus",
    METRIC_REF_KL_K1: "k1 estimate of KL(π_θ ‖ π_ref): mean of log π_θ − log π_ref",
    METRIC_REF_KL_K2: "k2 estimate of KL(π_θ ‖ π_ref): mean of ½(log π_θ − log π_ref)²",
    METRIC_REF_KL_K3: "k3 estimate of KL(π_θ ‖ π_ref): mean of r − 1 − log r, r = π_ref/π_θ",
}


class ObjectiveName(str, Enum):
    """Built-in objectives (string values are the registry names)."""

    VANILLA_PG = "vanilla_pg"
    PPO_CLIP = "ppo_clip"
    CLIP_HIGHER = "clip_higher"
    CLIP_COV = "clip_cov"
    KL_COV = "kl_cov"


KNOWN_OBJECTIVES: tuple[str, ...] = tuple(n.value for n in ObjectiveName)
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")


class ObjectiveFn(Protocol):
    def __call__(
        self,
        log_prob: torch.Tensor,
        old_log_prob: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        stats: "CovStats | None" = None,
        **hyperparameters,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


# ----------------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------------

OBJECTIVES: dict[str, ObjectiveFn] = {}


def register_objective(name: str, fn: ObjectiveFn | None = None, *, overwrite: bool = False):
    """Register ``fn`` under ``name`` (usable as ``@register_objective("name")``).

    Raises:
      ValueError: ``name`` is already registered and ``overwrite`` is False.
    """
    key = name.value if isinstance(name, Enum) else str(name)

    def deco(f: ObjectiveFn) -> ObjectiveFn:
        if key in OBJECTIVES and not overwrite:
            raise ValueError(f"objective {key!r} is already registered (pass overwrite=True to replace it)")
        OBJECTIVES[key] = f
        return f

    return deco if fn is None else deco(fn)


def get_objective(name: str | ObjectiveName) -> ObjectiveFn:
    """The registered objective called ``name``.

    Raises:
      ValueError: unknown name; the message lists the registered names.
    """
    key = name.value if isinstance(name, Enum) else name
    try:
        return OBJECTIVES[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown objective {name!r}; known objectives: {', '.join(sorted(OBJECTIVES))}") from None


# ----------------------------------------------------------------------------------------------------
# global selection statistics
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CovStats:
    """Covariance statistics of a whole selection scope (mini-batch, across micro-batches and ranks).

    Every field is optional; objectives use what is present and compute the rest over the tokens
    passed in. Only ``selected`` makes a micro-batch split *exactly* equivalent to the whole batch
    (the candidate set depends on all tokens); ``mean_*`` alone make the Eq. 10 scores global, and
    ``quota`` alone fixes k (then applied within each call).

    Attributes:
      mean_log_prob: 0-dim, masked mean of the detached current log π over the scope.
      mean_advantage: 0-dim, masked mean of A over the scope.
      num_tokens: 0-dim int64, N = unmasked tokens in the scope.
      quota: 0-dim int64, k = max(1, ⌊r·N⌋) of the objective's ratio r.
      selected: bool ``[B, T]`` tokens chosen by the covariance rule, rows aligned with the tensors
        passed to the objective (slice with :meth:`rows`).
    """

    mean_log_prob: torch.Tensor | None = None
    mean_advantage: torch.Tensor | None = None
    num_tokens: torch.Tensor | None = None
    quota: torch.Tensor | None = None
    selected: torch.Tensor | None = None

    def rows(self, index) -> "CovStats":
        """The same statistics with ``selected`` restricted to rows ``index`` (a slice or index
        tensor, as used to cut the micro-batch out of the mini-batch)."""
        return self if self.selected is None else replace(self, selected=self.selected[index])


def compute_cov_stats(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    objective: str | ObjectiveName = "clip_cov",
    generator: torch.Generator | None = None,
    **hyperparameters,
) -> CovStats:
    """Global :class:`CovStats` of a whole mini-batch, for micro-batched calls of ``objective``.

    Runs the objective's own selection (same code, same random draw for the same ``generator``
    state) under ``torch.no_grad``: ``objective(full batch, generator=g)`` and
    ``objective(micro-batch j, stats=compute_cov_stats(full batch, generator=g).rows(j))`` pick the
    same tokens. ``log_prob`` must be the *current* policy's log-probs (a no-grad forward before the
    first micro-batch; recompute after every optimiser step), as Clip-Cov's candidates exclude tokens
    PPO already clips. Across data-parallel ranks, call it on the all-gathered tensors and give each
    rank its rows.

    Args:
      log_prob, old_log_prob, advantages: ``[B, T]`` of the whole mini-batch.
      mask: ``[B, T]`` bool or 0/1.
      objective: ``"clip_cov"`` or ``"kl_cov"`` (selection included); any other registered name gives
        the means and N only (``quota``/``selected`` None).
      generator: Clip-Cov's random choice (use one on the tensors' device).
      **hyperparameters: the objective's keyword arguments (those it does not use are ignored here).
    Returns:
      CovStats with every applicable field set.
    """
    key = objective.value if isinstance(objective, Enum) else objective
    get_objective(key)  # unknown names fail early, with the list
    with torch.no_grad():
        lp, old, adv, m = _prepare(log_prob, old_log_prob, advantages, mask)
        mean_lp, mean_adv, n = _scope_moments(lp, adv, m)
        if key == ObjectiveName.CLIP_COV.value:
            h = _clip_cov_hparams(**_subset(hyperparameters, _CLIP_COV_KEYS))
            ratio = _ratio(lp, old)
            _, clipped_low, clipped_high = _ppo_terms(ratio, adv, m, h["eps_low"], h["eps_high"])
            cov = _cov_scores(lp, adv, m, mean_lp, mean_adv)
            cand = _clip_cov_candidates(cov, m, clipped_low | clipped_high, h["cov_lb"], h["cov_ub"])
            k = _quota(n, h["clip_ratio"])
            sel = _random_subset(cand, k, generator)
            return CovStats(mean_lp, mean_adv, n, k, sel)
        if key == ObjectiveName.KL_COV.value:
            h = _kl_cov_hparams(**_subset(hyperparameters, _KL_COV_KEYS))
            cov = _cov_scores(lp, adv, m, mean_lp, mean_adv)
            k = _quota(n, h["kl_ratio"])
            sel = _top_k(cov, m, k)
            return CovStats(mean_lp, mean_adv, n, k, sel)
        return CovStats(mean_lp, mean_adv, n)


# ----------------------------------------------------------------------------------------------------
# internals (no host synchronisation below this line)
# ----------------------------------------------------------------------------------------------------


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


def _check_stats(stats, like: torch.Tensor) -> CovStats | None:
    if stats is None:
        return None
    if not isinstance(stats, CovStats):
        raise ValueError(f"stats must be a CovStats (see compute_cov_stats), got {type(stats).__name__}")
    for name in ("mean_log_prob", "mean_advantage", "num_tokens", "quota"):
        v = getattr(stats, name)
        if v is not None and (not isinstance(v, torch.Tensor) or v.numel() != 1):
            raise ValueError(f"stats.{name} must be a 1-element tensor, got {v!r}")
    if stats.selected is not None:
        if not isinstance(stats.selected, torch.Tensor) or stats.selected.dtype != torch.bool:
            raise ValueError("stats.selected must be a bool tensor")
        check_same_shape(stats.selected, like, "stats.selected", "log_prob")
    return stats


def _ratio(lp: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(lp - old, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))


def _scope_moments(lp, adv, m):
    """(mean log π (detached), mean A, N) over the unmasked tokens passed in."""
    n = m.sum()
    d = n.clamp_min(1).to(lp.dtype)
    zero = torch.zeros_like(lp)
    return torch.where(m, lp.detach(), zero).sum() / d, torch.where(m, adv, zero).sum() / d, n


def _cov_scores(lp, adv, m, mean_lp, mean_adv):
    """Eq. 10 centred products (log π_i − mean log π)(A_i − Ā), detached, 0 at masked tokens.

    Same values as :func:`theory.covariance.token_covariance` when the means are this call's own; here
    the means may come from a larger scope (``CovStats``)."""
    cov = (lp.detach() - mean_lp.to(lp.dtype)) * (adv - mean_adv.to(lp.dtype))
    return torch.where(m, cov, torch.zeros_like(cov))


def _ppo_terms(ratio, adv, m, eps_low, eps_high):
    """PPO surrogate max(−Aρ, −A·clip(ρ, 1−ε_l, 1+ε_h)) and where its clip is active (low / high)."""
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    clipped = (pg2 > pg1) & m
    clipped_low = clipped & (ratio < 1.0 - eps_low)
    clipped_high = clipped & (ratio > 1.0 + eps_high)
    return torch.maximum(pg1, pg2), clipped_low, clipped_high


def _clip_cov_candidates(cov, m, clipped, cov_lb, cov_ub):
    return m & ~clipped & (cov > cov_lb) & (cov < cov_ub)


def _quota(n: torch.Tensor, ratio: float) -> torch.Tensor:
    """k = max(1, ⌊ratio·N⌋) as a 0-dim int64 tensor (float64 product, as Python's int(r*N))."""
    return torch.floor(n.to(torch.float64) * ratio).to(torch.int64).clamp_min(1)


def _top_k(keys: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool mask of the min(k, #eligible) eligible entries with the largest ``keys``.

    A stable descending sort gives each entry its rank; entries ranked below k are kept if eligible.
    Unlike ``torch.topk`` this needs k only as a tensor, so nothing waits for the device. Ties are
    broken by position (first wins)."""
    flat = torch.where(eligible, keys, torch.full_like(keys, -math.inf)).reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
    return (rank.reshape(keys.shape) < k) & eligible


def _random_subset(eligible: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A uniformly random subset of min(k, #eligible) eligible entries: the top-k of i.i.d. U(0,1) keys.

    One key per entry of ``eligible`` is drawn from ``generator`` (a generator on another device
    costs a host-to-device copy, which is a synchronisation: pass one on the tensors' device)."""
    if generator is None:
        keys = torch.rand(eligible.shape, device=eligible.device)
    else:
        keys = torch.rand(eligible.shape, generator=generator, device=generator.device).to(eligible.device)
    return _top_k(keys, eligible, k)


def _check_ratio(value, name: str, allow_large_ratio: bool) -> float:
    r = check_scalar(value, name, nonnegative=True)
    if r > 1.0:
        raise ValueError(f"{name}={r} must be a fraction of tokens in [0, 1]")
    if r > MAX_UNGUARDED_RATIO and not allow_large_ratio:
        raise ValueError(
            f"{name}={r} selects {100 * r:g}% of all tokens. {name} is a *fraction* (the paper uses 2e-4 = 0.02%"
            f" and 2e-3 = 0.2%), not a percent: the official repo's k_percent was in percent and verl's ratios"
            f" are fractions, an easy factor-100 mix-up. Pass allow_large_ratio=True if {r} is intended."
        )
    return r


def _check_eps(eps_low, eps_high) -> tuple[float, float]:
    lo = check_scalar(eps_low, "eps_low", nonnegative=True)
    hi = check_scalar(eps_high, "eps_high", nonnegative=True)
    if lo > 1.0:
        raise ValueError(f"eps_low={lo} must be <= 1 (the lower clip bound 1 - eps_low would be negative)")
    return lo, hi


_CLIP_COV_KEYS = ("clip_ratio", "cov_lb", "cov_ub", "eps_low", "eps_high", "allow_large_ratio")
_KL_COV_KEYS = ("kl_ratio", "kl_coef", "allow_large_ratio")


def _subset(d: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in d.items() if k in keys}


def _clip_cov_hparams(clip_ratio=2e-4, cov_lb=1.0, cov_ub=5.0, eps_low=0.2, eps_high=0.2, allow_large_ratio=False):
    lo, hi = _check_eps(eps_low, eps_high)
    lb, ub = float(cov_lb), float(cov_ub)
    if lb != lb or ub != ub:
        raise ValueError("cov_lb and cov_ub must not be NaN")
    if not lb < ub:
        raise ValueError(f"cov_lb={lb} must be < cov_ub={ub} (the candidate interval is (cov_lb, cov_ub))")
    return {"clip_ratio": _check_ratio(clip_ratio, "clip_ratio", allow_large_ratio), "cov_lb": lb,
            "cov_ub": ub, "eps_low": lo, "eps_high": hi}


def _kl_cov_hparams(kl_ratio=2e-3, kl_coef=1.0, allow_large_ratio=False):
    return {"kl_ratio": _check_ratio(kl_ratio, "kl_ratio", allow_large_ratio),
            "kl_coef": check_scalar(kl_coef, "kl_coef", nonnegative=True)}


def _frac(count_mask: torch.Tensor, n: torch.Tensor, dtype) -> torch.Tensor:
    return count_mask.sum().to(dtype) / n.clamp_min(1).to(dtype)


def _common_metrics(ratio, lp, old, m, n, cov) -> dict[str, torch.Tensor]:
    d = n.clamp_min(1).to(lp.dtype)
    zero = torch.zeros_like(ratio)
    log_r = torch.log(ratio.detach())
    k3 = torch.where(m, ratio.detach() - 1.0 - log_r, zero).sum() / d
    k1 = torch.where(m, old - lp.detach(), zero).sum() / d
    return {
        METRIC_NUM_TOKENS: n.detach(),
        METRIC_COV_MEAN: cov.sum() / d,
        METRIC_APPROX_KL: k3,
        METRIC_PPO_KL: k1,
    }


def _selection_metrics(selected, cov, n, dtype) -> dict[str, torch.Tensor]:
    count = selected.sum()
    return {
        METRIC_SELECTED_COUNT: count,
        METRIC_SELECTED_FRAC: count.to(dtype) / n.clamp_min(1).to(dtype),
        METRIC_COV_SELECTED_MEAN: torch.where(selected, cov, torch.zeros_like(cov)).sum()
        / count.clamp_min(1).to(dtype),
    }


def _moments(lp, adv, m, stats: CovStats | None):
    mean_lp, mean_adv, n = _scope_moments(lp, adv, m)
    if stats is not None:
        mean_lp = mean_lp if stats.mean_log_prob is None else stats.mean_log_prob.to(lp.device, lp.dtype)
        mean_adv = mean_adv if stats.mean_advantage is None else stats.mean_advantage.to(lp.device, lp.dtype)
    return mean_lp, mean_adv, n


# ----------------------------------------------------------------------------------------------------
# objectives
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


def _clip_metrics(c_low, c_high, n, dtype):
    return {
        METRIC_CLIP_FRAC_LOW: _frac(c_low, n, dtype),
        METRIC_CLIP_FRAC_HIGH: _frac(c_high, n, dtype),
        METRIC_CLIP_FRAC: _frac(c_low | c_high, n, dtype),
    }


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
    stats = _check_stats(stats, lp)
    ratio = _ratio(lp, old)
    ppo, c_low, c_high = _ppo_terms(ratio, adv, m, h["eps_low"], h["eps_high"])
    mean_lp, mean_adv, n = _moments(lp, adv, m, stats)
    cov = _cov_scores(lp, adv, m, mean_lp, mean_adv)
    cand = _clip_cov_candidates(cov, m, c_low | c_high, h["cov_lb"], h["cov_ub"])
    if stats is not None and stats.selected is not None:
        selected = stats.selected.to(m.device) & m
    else:
        k = stats.quota if stats is not None and stats.quota is not None else _quota(n, h["clip_ratio"])
        selected = _random_subset(cand, k.to(m.device), generator)
    loss = torch.where(m & ~selected, ppo, torch.zeros_like(ppo))
    metrics = _common_metrics(ratio, lp, old, m, n, cov)
    metrics.update(_clip_metrics(c_low, c_high, n, lp.dtype))
    metrics[METRIC_CANDIDATE_FRAC] = _frac(cand, n, lp.dtype)
    metrics.update(_selection_metrics(selected, cov, n, lp.dtype))
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
    stats = _check_stats(stats, lp)
    ratio = _ratio(lp, old)
    mean_lp, mean_adv, n = _moments(lp, adv, m, stats)
    cov = _cov_scores(lp, adv, m, mean_lp, mean_adv)
    if stats is not None and stats.selected is not None:
        selected = stats.selected.to(m.device) & m
    else:
        k = stats.quota if stats is not None and stats.quota is not None else _quota(n, h["kl_ratio"])
        selected = _top_k(cov, m, k.to(m.device))
    zero = torch.zeros_like(ratio)
    penalty = torch.where(selected, h["kl_coef"] * torch.abs(lp - old), zero)
    loss = torch.where(m, -adv * ratio + penalty, zero)
    metrics = _common_metrics(ratio, lp, old, m, n, cov)
    metrics.update(_selection_metrics(selected, cov, n, lp.dtype))
    metrics[METRIC_KL_PENALTY] = penalty.detach().sum() / n.clamp_min(1).to(lp.dtype)
    return loss, metrics


# ----------------------------------------------------------------------------------------------------
# additive terms
# ----------------------------------------------------------------------------------------------------


def entropy_bonus(
    entropy: torch.Tensor, mask: torch.Tensor, *, coef: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Entropy-bonus term to add to an objective's loss matrix: L_t = −α H_t (paper §4.1,
    L_ent = L − α H(π_θ); theory.md §1.11).

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
    log_prob: torch.Tensor, ref_log_prob: torch.Tensor, mask: torch.Tensor, *, coef: float, estimator: str = "k3"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reference-KL term to add to an objective's loss matrix: L_t = β k(y_t), a per-token estimate of
    KL(π_θ ‖ π_ref) from tokens sampled by π_θ (paper §4.1, L_KL = L + β D_KL; theory.md §1.12).
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


__all__ = [
    "CovStats",
    "KL_ESTIMATORS",
    "KNOWN_OBJECTIVES",
    "LOG_RATIO_CLAMP",
    "MAX_UNGUARDED_RATIO",
    "METRIC_DESCRIPTIONS",
    *(name for name in dir() if name.startswith("METRIC_") and name != "METRIC_DESCRIPTIONS"),
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
