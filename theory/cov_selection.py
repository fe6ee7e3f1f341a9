"""Covariance-based token selection of Clip-Cov and KL-Cov (paper §4.2, Eqs. 10–14).

Over one *selection scope* with N unmasked tokens:

    Cov_i = (log π_θ(y_i) − mean log π_θ)(A_i − Ā)                 (Eq. 10, masked means, detached)
    k     = max(1, ⌊r·N⌋)                                           (the token quota of ratio r)
    KL-Cov:   I_KL   = the k unmasked tokens with the largest Cov_i (ties: first position wins)
    Clip-Cov: I_clip = uniform random subset of size min(k, |cand|) of
              cand   = {i unmasked, PPO clip not active at i, cov_lb < Cov_i < cov_ub}

The semantics are those of the reference code (docs/ecosystem.md §1.3–§1.4). The random
subset is the top-k of i.i.d. U(0,1) keys drawn from an explicit ``torch.Generator`` (the global RNG if
None), so the same generator state gives the same subset. Nothing here synchronises with the host: k
stays a tensor. This module knows nothing of PPO (the clip indicator is an input) and imports no other
objective code; the objectives of :mod:`theory.objectives` call it.

**Scope.** An objective's means, candidates and quota are computed over *every token passed in*. The
paper means the whole training batch; verl and the official repo use each micro-batch on each GPU
(docs/ecosystem.md §1.7). To select over the whole mini-batch of an optimizer step processed in micro-batches,
compute its :class:`CovStats` once (:func:`theory.objectives.compute_cov_stats`, i.e. :func:`scope_stats`
with the objective's hook: current log-probs from a no-grad forward, all-gathered across data-parallel
ranks), pass ``stats=stats.rows(idx)`` with each micro-batch and aggregate with the whole-batch
denominators (:mod:`theory.aggregation`): the micro-batch losses and gradients then sum to the whole
batch's. A caller that spans the scope itself (the verl plugin: data-parallel ranks) instead passes
:class:`CovStats` *hooks* — ``reduce`` (the scope's sums) and ``choose`` (the scope-wide choice) — so one
objective call computes ρ, the PPO terms, the Eq. 10 scores and the candidates once, for the loss and the
selection alike.

Shapes: ``log_prob``, ``advantages``, ``mask`` (bool) and the returned masks are ``[B, T]`` (any shape,
all equal); means, N and k are 0-dim tensors. Inputs are as :func:`prepare_tokens` returns them (the
front door of every objective call too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import torch

from ._checks import check_same_shape, compute_dtype, host_readable
from .aggregation import _check_token_mask, _check_token_tensor, _check_token_values, _masked_zero


@dataclass(frozen=True)
class CovStats:
    """Covariance statistics of a whole selection scope (mini-batch, across micro-batches and ranks).

    Every field is optional; objectives use what is present and compute the rest over the tokens
    passed in. Only ``selected`` makes a micro-batch split *exactly* equivalent to the whole batch
    (the candidate set depends on all tokens); ``mean_*`` alone make the Eq. 10 scores global, and
    ``quota`` alone fixes k (then applied within each call).

    Two optional hooks let a caller that spans the scope itself (e.g. data-parallel ranks, the verl
    plugin) hand the objective the parts it owns, so the objective computes every other quantity once:

    - ``reduce(sums) -> sums``: maps this call's float64 ``[Σ log π, Σ A, N]`` over its unmasked tokens
      to the scope's (e.g. an all-reduce; it may work in place). The means are then
      ``(Σ / max(N, 1))`` in float64, cast to the tokens' dtype, and k = max(1, ⌊r·N_scope⌋); it
      excludes ``mean_log_prob`` / ``mean_advantage``.
    - ``choose(cov, eligible, k) -> selected``: the choice among the eligible tokens (bool ``[B, T]``
      from the Eq. 10 scores, the rule's eligible set and the 0-dim int64 quota), replacing the rule's
      own (top-k of ``cov`` for KL-Cov, a uniformly random subset for Clip-Cov; ``generator`` unused).
      It must return a subset of ``eligible`` of size min(k, |eligible|).

    Attributes:
      mean_log_prob: 0-dim, masked mean of the detached current log π over the scope.
      mean_advantage: 0-dim, masked mean of A over the scope.
      num_tokens: 0-dim int64, N = unmasked tokens in the scope.
      quota: 0-dim int64, k = max(1, ⌊r·N⌋) of the objective's ratio r.
      selected: bool ``[B, T]`` tokens chosen by the covariance rule, rows aligned with the tensors
        passed to the objective (slice with :meth:`rows`).
      reduce: the scope-reduction hook above (None: this call is the scope, or the means are given).
      choose: the selection hook above (None: the rule's own choice).
    """

    mean_log_prob: torch.Tensor | None = None
    mean_advantage: torch.Tensor | None = None
    num_tokens: torch.Tensor | None = None
    quota: torch.Tensor | None = None
    selected: torch.Tensor | None = None
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    choose: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def rows(self, index) -> "CovStats":
        """The same statistics with ``selected`` restricted to rows ``index``: the slice or index
        tensor that cuts the micro-batch out of the mini-batch (an index tensor should live on the
        same device as ``selected``; a CPU index into a CUDA tensor costs a copy)."""
        return self if self.selected is None else replace(self, selected=self.selected[index])


def check_cov_stats(stats, like: torch.Tensor) -> CovStats | None:
    """Return ``stats`` (None or a :class:`CovStats` whose fields fit ``like``); raise ``ValueError``."""
    if stats is None:
        return None
    if not isinstance(stats, CovStats):
        raise ValueError(f"stats must be a CovStats (see compute_cov_stats), got {type(stats).__name__}")
    for name in ("mean_log_prob", "mean_advantage", "num_tokens", "quota"):
        v = getattr(stats, name)
        if v is not None and (not isinstance(v, torch.Tensor) or v.numel() != 1):
            raise ValueError(f"stats.{name} must be a 1-element tensor, got {v!r}")
    for name in ("reduce", "choose"):
        if getattr(stats, name) is not None and not callable(getattr(stats, name)):
            raise ValueError(f"stats.{name} must be callable or None, got {getattr(stats, name)!r}")
    if stats.reduce is not None and (stats.mean_log_prob is not None or stats.mean_advantage is not None):
        raise ValueError("stats.reduce computes the scope means: pass it without mean_log_prob or "
                         "mean_advantage")
    if stats.selected is not None:
        if not isinstance(stats.selected, torch.Tensor) or stats.selected.dtype != torch.bool:
            raise ValueError("stats.selected must be a bool tensor")
        check_same_shape(stats.selected, like, "stats.selected", "log_prob")
    return stats


def prepare_tokens(log_prob, old_log_prob, advantages, mask, stats=None):
    """Validate and cast the ``[B, T]`` token tensors of an objective call or a selection scope.

    Returns (lp, old, adv, m, stats): float32 (float64 if an input is) tensors, lp keeps its graph and
    equals old at masked tokens (so ρ = 1 there and padding garbage cannot leak); old and adv are
    detached and 0 at masked tokens; m is bool; ``stats`` checked by :func:`check_cov_stats`. NaN/inf
    checks run for CPU tensors only (elsewhere they would need a host sync)."""
    return _prepare(log_prob, old_log_prob, advantages, mask, stats, detach=False)[1:]


def _prepare(log_prob, old_log_prob, advantages, mask, stats, *, detach: bool):
    """(x, lp, old, adv, m, stats): :func:`prepare_tokens`' tensors and x = log_prob in the compute dtype
    (with its graph); ``detach``: lp without a graph (the objectives attach their gradient to x in
    closed form, :func:`theory.surrogate.with_gradient`)."""
    named = {"log_prob": log_prob, "old_log_prob": old_log_prob, "advantages": advantages}
    for name, t in named.items():
        _check_token_tensor(t, name, values=False)
    _check_token_values(named)
    check_same_shape(log_prob, old_log_prob, "log_prob", "old_log_prob")
    check_same_shape(log_prob, advantages, "log_prob", "advantages")
    for name, t in (("old_log_prob", old_log_prob), ("advantages", advantages)):
        if t.device != log_prob.device:
            raise ValueError(f"{name} is on {t.device} but log_prob is on {log_prob.device}")
    m = _check_token_mask(mask, log_prob)
    dtype = compute_dtype(log_prob, old_log_prob, advantages)
    x = log_prob.to(dtype)
    finite = host_readable(log_prob)     # CPU inputs were checked above
    old = _masked_zero(old_log_prob.detach().to(dtype), m, finite=finite)
    adv = _masked_zero(advantages.detach().to(dtype), m, finite=finite)
    lp = _masked_zero(x.detach() if detach else x, m, finite=finite)   # = old (0) at masked tokens
    return x, lp, old, adv, m, check_cov_stats(stats, log_prob)


class Selection(NamedTuple):
    """What a covariance rule computed: the scope statistics, Eq. 10 scores and the chosen tokens."""

    mean_log_prob: torch.Tensor
    mean_advantage: torch.Tensor
    num_tokens: torch.Tensor
    quota: torch.Tensor | None   # None when stats.selected was given
    cov: torch.Tensor            # [B, T] Eq. 10 scores (0 at masked tokens)
    candidates: torch.Tensor     # [B, T] bool (Clip-Cov: the eligible set; KL-Cov: the mask)
    selected: torch.Tensor       # [B, T] bool

    def stats(self) -> CovStats:
        """The :class:`CovStats` that make micro-batched calls repeat this selection."""
        return CovStats(self.mean_log_prob, self.mean_advantage, self.num_tokens, self.quota, self.selected)


def _moments(log_prob, advantages, mask, stats):
    """(mean log π, mean A, N of this call, N of the scope (int64, or float64 from ``stats.reduce``)) (see
    :func:`scope_moments`)."""
    if stats is not None and stats.reduce is not None:   # lp and A are 0 at masked tokens (prepared)
        n = torch.count_nonzero(mask)
        sums = torch.stack([log_prob.detach().sum(dtype=torch.float64), advantages.sum(dtype=torch.float64),
                            n.to(torch.float64)])
        sums = stats.reduce(sums)
        means = (sums[:2] / sums[2].clamp_min(1)).to(log_prob.dtype)
        return means[0], means[1], n, sums[2]     # the scope's N as float64 (exact), for the quota
    mean_lp, mean_adv, n = scope_moments(log_prob, advantages, mask, stats)
    return mean_lp, mean_adv, n, n


def scope_moments(log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                  stats: CovStats | None = None):
    """(mean log π (detached), mean A, N) over the unmasked tokens passed in; the means of ``stats``
    (when set, or from its ``reduce`` hook) replace this call's own, N is always this call's."""
    if stats is not None and stats.reduce is not None:
        return _moments(log_prob, advantages, mask, stats)[:3]
    n = torch.count_nonzero(mask)     # mask.sum() (int64), in one pass
    d = n.clamp_min(1).to(log_prob.dtype)
    if stats is not None and stats.mean_log_prob is not None:
        mean_lp = stats.mean_log_prob.to(log_prob.device, log_prob.dtype)
    else:
        mean_lp = torch.where(mask, log_prob.detach(), 0.0).sum() / d
    if stats is not None and stats.mean_advantage is not None:
        mean_adv = stats.mean_advantage.to(log_prob.device, log_prob.dtype)
    else:
        mean_adv = torch.where(mask, advantages, 0.0).sum() / d
    return mean_lp, mean_adv, n


def centred_products(log_prob, advantages, mask, mean_log_prob, mean_advantage) -> torch.Tensor:
    """Eq. 10 centred products (log π_i − mean log π)(A_i − Ā), detached, 0 at masked tokens.

    Same values as :func:`theory.covariance.token_covariance` when the means are this call's own; here
    the means may come from a larger scope (:class:`CovStats`). At masked tokens the prepared inputs are 0,
    so the product there is the finite mean·mean and zeroing it by multiplication is exact (a zero of
    either sign)."""
    dtype = log_prob.dtype
    cov = (log_prob.detach() - mean_log_prob.to(dtype)) * (advantages - mean_advantage.to(dtype))
    return _masked_zero(cov, mask, finite=True)


def token_quota(num_tokens: torch.Tensor, ratio: float) -> torch.Tensor:
    """k = max(1, ⌊ratio·N⌋) as a 0-dim int64 tensor (float64 product, as Python's int(r*N)); ``num_tokens``
    a 0-dim integer or float64 tensor."""
    return torch.floor(num_tokens.to(torch.float64) * ratio).to(torch.int64).clamp_min(1)


def top_k_mask(keys: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool mask of the min(k, #eligible) eligible entries with the largest ``keys``, ties broken by
    position (first wins). ``keys`` float (finite where eligible) and ``eligible`` bool of one shape, ``k`` a
    0-dim integer tensor.

    Off the CPU a stable descending sort gives each entry its rank and entries ranked below k are kept if
    eligible: unlike ``torch.topk`` this needs k only as a tensor, so nothing waits for the device. On the
    CPU, where reading k costs no wait, ``torch.topk`` of the k + 1 largest does the same in a fraction of
    the time (same result; ``tests/test_theory_surrogate.py`` holds it against the sort)."""
    if host_readable(keys):
        return _top_k_mask_cpu(keys, eligible, k)
    return _top_k_mask_sorted(keys, eligible, k)


def _top_k_mask_sorted(keys, eligible, k):
    flat = torch.where(eligible, keys, torch.full_like(keys, -math.inf)).reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
    return (rank.reshape(keys.shape) < k) & eligible


def _largest(flat: torch.Tensor, m: int, chunk: int = 64):
    """(values, indices) of the m largest entries of 1-D ``flat`` (values descending), as ``torch.topk`` —
    which of several equal entries is returned may differ, which :func:`_top_k_mask_cpu` settles by position.

    When ``flat`` splits into at least 4m chunks of ``chunk`` entries: the m chunks with the largest maxima
    hold every entry above L, the m-th largest chunk maximum, and L <= the m-th largest entry, so the m
    largest entries of those m·chunk candidates have the right values (CPU: ~30% faster than one ``topk``
    over 32k entries)."""
    rows = flat.numel() // chunk
    if flat.numel() % chunk or rows < 4 * m:
        return torch.topk(flat, m)
    body = flat.view(rows, chunk)
    best = torch.topk(body.amax(1), m).indices
    top = torch.topk(body.index_select(0, best).reshape(-1), m)
    return top.values, best[top.indices // chunk] * chunk + top.indices % chunk


def _top_k_mask_cpu(keys, eligible, k):
    """:func:`top_k_mask` with ``torch.topk``: the kk = min(k, #eligible) largest, unless the kk-th and the
    (kk+1)-th largest tie, when ties at the threshold go by position."""
    kk, flat = int(k), keys.reshape(-1)
    top = _largest(flat, kk + 1) if 0 < kk < flat.numel() else None   # the kk + 1 largest of all keys: if
    if top is None or not bool(eligible.reshape(-1)[top[1]].all()):     # all are eligible, they are
        count = int(torch.count_nonzero(eligible))                         # the kk + 1 largest eligible
        kk = min(kk, count)
        if kk <= 0:
            return torch.zeros_like(eligible)
        if kk == count:
            return eligible.clone()
        flat = torch.where(eligible, keys, -math.inf).reshape(-1)
        top = _largest(flat, kk + 1)                        # the (kk+1)-th is eligible too (kk < count)
    values, indices = top
    thr, after = values[kk - 1:kk + 1].tolist()             # the kk-th and (kk+1)-th largest (exact)
    if after < thr:                                         # no tie at the threshold: the kk largest
        out = torch.zeros(flat.shape, dtype=torch.bool, device=keys.device)
        return out.index_fill_(0, indices[:kk], True).reshape(keys.shape)
    above, ties = eligible & (keys > thr), eligible & (keys == thr)
    rank = ties.reshape(-1).cumsum(0).reshape(keys.shape)
    return above | (ties & (rank <= kk - above.sum()))


def random_subset(eligible: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A uniformly random subset of min(k, #eligible) eligible entries: the top-k of i.i.d. U(0,1) keys.

    One key per entry of ``eligible`` is drawn from ``generator`` (the global RNG if None; a generator
    on another device costs a host-to-device copy, which is a synchronisation: pass one on the tensors'
    device)."""
    if generator is None:
        keys = torch.rand(eligible.shape, device=eligible.device)
    else:
        keys = torch.rand(eligible.shape, generator=generator, device=generator.device).to(eligible.device)
    return top_k_mask(keys, eligible, k)


def _select(log_prob, advantages, mask, ratio, stats, eligible_of, choose: Callable) -> Selection:
    """Scope statistics, Eq. 10 scores, the eligible set, then ``stats.selected`` if given (k None),
    else ``choose(cov, eligible, k)`` (``stats.choose`` if set) with k = ``stats.quota`` or
    max(1, ⌊ratio·N⌋), N of the scope (``stats.reduce``) or of this call."""
    mean_lp, mean_adv, n, n_scope = _moments(log_prob, advantages, mask, stats)
    cov = centred_products(log_prob, advantages, mask, mean_lp, mean_adv)
    eligible = eligible_of(cov)
    if stats is not None and stats.selected is not None:
        return Selection(mean_lp, mean_adv, n, None, cov, eligible, stats.selected.to(mask.device) & mask)
    given = stats is not None and stats.quota is not None
    k = stats.quota.to(mask.device) if given else token_quota(n_scope, ratio)
    if stats is not None and stats.choose is not None:
        choose = stats.choose
    return Selection(mean_lp, mean_adv, n, k, cov, eligible, choose(cov, eligible, k))


def clip_cov_selection(
    log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clipped: torch.Tensor, *,
    clip_ratio: float, cov_lb: float, cov_ub: float, stats: CovStats | None = None,
    generator: torch.Generator | None = None,
) -> Selection:
    """Clip-Cov's I_clip: a uniformly random subset of size min(k, |cand|) of the candidates
    cand = {mask, not ``clipped`` (the PPO clip indicator), cov_lb < Cov_i < cov_ub}, k = max(1, ⌊r·N⌋).

    Args:
      log_prob, advantages: ``[B, T]`` float (A = 0 at masked tokens); mask, clipped: ``[B, T]`` bool.
      clip_ratio: r; cov_lb, cov_ub: the strict candidate interval of Cov_i (checked by the caller).
      stats: scope statistics (:class:`CovStats`); generator: the random choice's ``torch.Generator``.
    """
    def eligible_of(cov):
        return mask & ~clipped & (cov > cov_lb) & (cov < cov_ub)

    return _select(log_prob, advantages, mask, clip_ratio, stats, eligible_of,
                   lambda cov, eligible, k: random_subset(eligible, k, generator))


def kl_cov_selection(
    log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *, kl_ratio: float,
    stats: CovStats | None = None,
) -> Selection:
    """KL-Cov's I_KL: the k = max(1, ⌊r·N⌋) unmasked tokens with the largest Eq. 10 score Cov_i
    (deterministic, ties broken by position). Args as :func:`clip_cov_selection`."""
    return _select(log_prob, advantages, mask, kl_ratio, stats, lambda cov: mask, top_k_mask)


def scope_stats(log_prob, old_log_prob, advantages, mask, *, select: Callable | None = None,
                generator: torch.Generator | None = None) -> CovStats:
    """:class:`CovStats` of a whole selection scope, under ``torch.no_grad``: those of the
    :class:`Selection` ``select(lp, old, adv, m, generator)`` makes on the :func:`prepare_tokens`
    tensors, or only the means and N when ``select`` is None."""
    with torch.no_grad():
        lp, old, adv, m, _ = prepare_tokens(log_prob, old_log_prob, advantages, mask)
        if select is None:
            return CovStats(*scope_moments(lp, adv, m))
        return select(lp, old, adv, m, generator).stats()


__all__ = [
    "CovStats",
    "Selection",
    "centred_products",
    "check_cov_stats",
    "clip_cov_selection",
    "kl_cov_selection",
    "prepare_tokens",
    "random_subset",
    "scope_moments",
    "scope_stats",
    "token_quota",
    "top_k_mask",
]
