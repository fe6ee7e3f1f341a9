"""Covariance-based token selection of Clip-Cov and KL-Cov (paper §4.2, Eqs. 10–14).

Holds :class:`CovStats` and :func:`compute_cov_stats` (the statistics of a whole selection scope, for
micro-batched calls; both re-exported by :mod:`theory.objectives`) and the selection internals both
objectives share: the Eq. 10 centred products, the Clip-Cov candidate set, the token quota
k = max(1, ⌊r·N⌋), the top-k and uniformly random subsets, and the hyperparameter checks. The semantics
are those of the reference code (shared/reference/ecosystem.md §1.3–§1.4; selection scope §1.7).
:func:`compute_cov_stats` looks objectives up in :mod:`theory.objective_registry`; the built-ins are
registered when :mod:`theory.objectives` is imported (``import theory`` does it). Nothing here
synchronises with the host: k stays a tensor and the random subset is the top-k of i.i.d. U(0,1) keys.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import NamedTuple

import torch

from ._checks import check_same_shape, check_scalar
from ._surrogate import _check_eps, _ppo_terms, _prepare, _ratio
from .objective_metrics import MAX_UNGUARDED_RATIO
from .objective_registry import ObjectiveName, get_objective


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
        """The same statistics with ``selected`` restricted to rows ``index``: the slice or index
        tensor that cuts the micro-batch out of the mini-batch (an index tensor should live on the
        same device as ``selected``; a CPU index into a CUDA tensor costs a copy)."""
        return self if self.selected is None else replace(self, selected=self.selected[index])


def compute_cov_stats(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    objective: str | ObjectiveName,
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
      **hyperparameters: the objective's own keyword arguments (the same dict the objective gets).
    Returns:
      CovStats with every applicable field set.
    Raises:
      ValueError: unknown objective, a keyword the objective does not take, or a bad value.
    """
    key = objective.value if isinstance(objective, Enum) else objective
    accepted = {
        p.name for p in inspect.signature(get_objective(key)).parameters.values() if p.kind is p.KEYWORD_ONLY
    } - {"generator", "stats"}
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        raise ValueError(
            f"objective {key!r} takes no hyperparameter(s) {unknown}; it takes {sorted(accepted)}"
        )
    with torch.no_grad():
        lp, old, adv, m = _prepare(log_prob, old_log_prob, advantages, mask)
        if key == ObjectiveName.CLIP_COV.value:
            c = _clip_cov_core(lp, old, adv, m, _clip_cov_hparams(**hyperparameters), None, generator).sel
        elif key == ObjectiveName.KL_COV.value:
            c = _kl_cov_core(lp, adv, m, _kl_cov_hparams(**hyperparameters), None)
        else:
            mean_lp, mean_adv, n = _scope_moments(lp, adv, m)
            return CovStats(mean_lp, mean_adv, n)
        return CovStats(c.mean_log_prob, c.mean_advantage, c.num_tokens, c.quota, c.selected)


# ----------------------------------------------------------------------------------------------------
# internals (no host synchronisation below this line)
# ----------------------------------------------------------------------------------------------------


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


def _random_subset(
    eligible: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
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
            f"{name}={r} selects {100 * r:g}% of all tokens. {name} is a *fraction* (the paper uses"
            f" 2e-4 = 0.02% and 2e-3 = 0.2%), not a percent: the official repo's k_percent was in"
            f" percent and verl's ratios are fractions, an easy factor-100 mix-up."
            f" Pass allow_large_ratio=True if {r} is intended."
        )
    return r


def _clip_cov_hparams(
    clip_ratio=2e-4, cov_lb=1.0, cov_ub=5.0, eps_low=0.2, eps_high=0.2, allow_large_ratio=False
):
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


def _moments(lp, adv, m, stats: CovStats | None):
    mean_lp, mean_adv, n = _scope_moments(lp, adv, m)
    if stats is not None:
        mean_lp = mean_lp if stats.mean_log_prob is None else stats.mean_log_prob.to(lp.device, lp.dtype)
        mean_adv = mean_adv if stats.mean_advantage is None else stats.mean_advantage.to(lp.device, lp.dtype)
    return mean_lp, mean_adv, n


class _Selection(NamedTuple):
    """What a covariance rule computed: the scope statistics, Eq. 10 scores and the chosen tokens."""

    mean_log_prob: torch.Tensor
    mean_advantage: torch.Tensor
    num_tokens: torch.Tensor
    quota: torch.Tensor | None   # None when stats.selected was given
    cov: torch.Tensor            # [B, T] Eq. 10 scores (0 at masked tokens)
    candidates: torch.Tensor     # [B, T] bool (Clip-Cov: the eligible set; KL-Cov: the mask)
    selected: torch.Tensor       # [B, T] bool


class _ClipCovResult(NamedTuple):
    sel: _Selection
    ratio: torch.Tensor
    ppo: torch.Tensor
    clipped_low: torch.Tensor
    clipped_high: torch.Tensor


def _select(choose, ratio: float, m, n, stats: CovStats | None):
    """(k, selected): ``stats.selected`` if given (k None), else ``choose(k)`` with k = ``stats.quota``
    or max(1, ⌊ratio·N⌋)."""
    if stats is not None and stats.selected is not None:
        return None, stats.selected.to(m.device) & m
    k = stats.quota.to(m.device) if stats is not None and stats.quota is not None else _quota(n, ratio)
    return k, choose(k)


def _clip_cov_core(lp, old, adv, m, h, stats, generator) -> _ClipCovResult:
    """Clip-Cov selection; shared by :func:`clip_cov` and :func:`compute_cov_stats` so that both make
    the same random draw from the same generator state."""
    ratio = _ratio(lp, old)
    ppo, c_low, c_high = _ppo_terms(ratio, adv, m, h["eps_low"], h["eps_high"])
    moments = _moments(lp, adv, m, stats)
    cov = _cov_scores(lp, adv, m, moments[0], moments[1])
    cand = _clip_cov_candidates(cov, m, c_low | c_high, h["cov_lb"], h["cov_ub"])
    k, selected = _select(lambda k: _random_subset(cand, k, generator), h["clip_ratio"], m, moments[2], stats)
    return _ClipCovResult(_Selection(*moments, k, cov, cand, selected), ratio, ppo, c_low, c_high)


def _kl_cov_core(lp, adv, m, h, stats) -> _Selection:
    """KL-Cov selection (top-k by Eq. 10 score); shared by :func:`kl_cov` and :func:`compute_cov_stats`."""
    moments = _moments(lp, adv, m, stats)
    cov = _cov_scores(lp, adv, m, moments[0], moments[1])
    k, selected = _select(lambda k: _top_k(cov, m, k), h["kl_ratio"], m, moments[2], stats)
    return _Selection(*moments, k, cov, m, selected)


__all__ = ["CovStats", "compute_cov_stats"]
