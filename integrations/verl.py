"""verl plugin: the package's Clip-Cov and KL-Cov (:mod:`theory.objectives`) as verl policy losses.

Load it in every verl process with ``VERL_USE_EXTERNAL_MODULES=integrations.verl`` (verl imports the listed
modules when ``verl`` is imported, in the driver and in each Ray worker) and select a loss with
``actor_rollout_ref.actor.policy_loss.loss_mode=em_kl_cov`` (or ``em_clip_cov``). Registered names:

    em_clip_cov   :func:`theory.objectives.clip_cov`, PPO clip from ``clip_ratio{,_low,_high}``,
                  ``clip_cov_ratio`` / ``clip_cov_lb`` / ``clip_cov_ub`` from ``policy_loss``
    em_kl_cov     :func:`theory.objectives.kl_cov`, ``kl_cov_ratio`` and ``ppo_kl_coef`` from ``policy_loss``

Both follow verl's policy-loss contract (keyword call ``fn(old_log_prob=, log_prob=, advantages=,
response_mask=, loss_agg_mode=, config=, rollout_is_weights=)`` with ``[B, T]`` tensors, returning
``(scalar loss, metrics)``), aggregate with verl's own ``agg_loss(..., **config.global_batch_info)`` and
multiply the loss matrix by ``rollout_is_weights`` when given, as verl's ``clip_cov``/``kl_cov`` do.
The token fractions are checked by :func:`theory.objectives.validate_objective_params` (a value > 0.05
is taken for a percent and rejected unless ``ENTROPY_MECH_VERL_ALLOW_LARGE_RATIO=1``).

What differs from verl's own ``clip_cov``/``kl_cov`` (docs/ecosystem.md §1.6–§1.7):

- **Selection scope**: the Eq. 10 means, N, the quota k = max(1, ⌊r·N⌋) and the chosen tokens span every
  data-parallel rank of the call (``torch.distributed`` initialised: sums all-reduced, the top-k found by a
  distributed radix select; ties broken by (rank, row, position)), so R ranks select exactly what one
  process selects on their concatenated micro-batches. The group is the one given to :func:`configure`,
  else the data-parallel part of verl's Ulysses mesh ``(dp, sp)`` when sequence parallelism is on, else
  the default group. Every rank must call the loss equally often (verl's engine keeps the micro-batch count
  equal across data-parallel ranks). With Megatron, pass its data-parallel group to :func:`configure`.
- **Seeded**: Clip-Cov's random subset is the top-k of uniform keys from a counter-based generator keyed by
  (seed, call number, global row, position), the same for a token however the batch is split across ranks
  (seed: :func:`configure` or ``ENTROPY_MECH_VERL_SEED``, default 0). verl's draws ``torch.randperm`` from
  the global RNG.
- **No host synchronisation**: quota, selection and metrics stay on the device (metrics are 0-dim detached
  tensors; verl's ``Metric`` converts them). verl's versions call ``.item()`` and run KL-Cov's top-k on CPU.
- log ρ is clamped to ±20 before ``exp`` (:data:`theory.objectives.LOG_RATIO_CLAMP`), as verl's ``vanilla``.
- **One pass**: the objective is called once, with :class:`theory.cov_selection.CovStats` hooks (``reduce``:
  the all-reduce of its [Σ log π, Σ A, N]; ``choose``: the group's top-k / seeded subset), so ρ, the PPO terms
  and the Eq. 10 scores are computed once for both the selection and the loss.

Metrics: verl's keys with verl's meanings (``actor/pg_clipfrac`` = Clip-Cov's zeroed fraction,
``actor/ppo_kl``: Clip-Cov mean(log π_old − log π), KL-Cov mean |log ρ|) plus the objective's metrics as
``actor/em_<name>`` (e.g. ``actor/em_selected_count``, this call's tokens) and
``actor/em_selected_count_global`` (the whole group's).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

try:
    from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss
except ImportError as err:  # pragma: no cover - exercised only without verl
    raise ImportError("integrations.verl needs verl: pip install verl (CPU tests: `make install` installs it "
                      "with --no-deps and the few packages its core_algos imports)") from err

from theory.cov_selection import CovStats, prepare_tokens, top_k_mask
from theory.objectives import (METRIC_ABS_LOG_RATIO, clip_cov, kl_cov, objective_spec,
                               validate_objective_params)

CLIP_COV_NAME = "em_clip_cov"
KL_COV_NAME = "em_kl_cov"
SEED_ENV = "ENTROPY_MECH_VERL_SEED"
ALLOW_LARGE_RATIO_ENV = "ENTROPY_MECH_VERL_ALLOW_LARGE_RATIO"
#: the values verl's own clip_cov/kl_cov use when a field is None or absent (the config defaults are the same
#: but ppo_kl_coef, whose config default is 0.1)
VERL_DEFAULTS = {"clip_cov_ratio": 0.0002, "clip_cov_lb": 1.0, "clip_cov_ub": 5.0, "kl_cov_ratio": 0.0002,
                 "ppo_kl_coef": 1.0, "clip_ratio": 0.2}


@dataclass
class _State:
    group: object = None        # explicit selection group (None: automatic)
    seed: int | None = None     # None: ENTROPY_MECH_VERL_SEED or 0
    calls: int = 0              # loss calls of this process (the counter of Clip-Cov's keys)


_STATE = _State()
_DP_GROUPS: dict = {}


def configure(*, group=None, seed: int | None = None) -> None:
    """Set the selection group (a ``torch.distributed`` process group; None: automatic, see the module
    docstring) and Clip-Cov's seed, and reset the call counter. Call it on every rank."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _STATE.group, _STATE.seed, _STATE.calls = group, seed, 0


def _seed() -> int:
    if _STATE.seed is not None:
        return _STATE.seed
    raw = os.environ.get(SEED_ENV, "0")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{SEED_ENV}={raw!r} is not an integer") from None
    if value < 0:
        raise ValueError(f"{SEED_ENV}={value} must be >= 0")
    return value


def selection_group():
    """The process group selection spans, or None on one process (torch.distributed not initialised or a
    group of one rank)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = _STATE.group
    if group is None:
        from verl.utils.ulysses import get_ulysses_sequence_parallel_world_size

        sp, world = get_ulysses_sequence_parallel_world_size(), dist.get_world_size()
        if sp > 1:  # verl's mesh (dp, sp): rank = i·sp + j; ranks of one sp group hold the same data
            if sp not in _DP_GROUPS:   # new_group is collective: every rank creates every group, in order
                groups = [dist.new_group([i * sp + j for i in range(world // sp)]) for j in range(sp)]
                _DP_GROUPS[sp] = groups[dist.get_rank() % sp]
            group = _DP_GROUPS[sp]
        else:
            group = dist.group.WORLD
    return None if dist.get_world_size(group) == 1 else group


# ----------------------------------------------------------------------------- config


def _field(obj, name: str):
    if obj is None:
        return None
    if hasattr(obj, "get"):
        return obj.get(name, None)
    return getattr(obj, name, None)


def _value(obj, name: str):
    v = _field(obj, name)
    return VERL_DEFAULTS[name] if v is None else v


def hyperparameters(objective: str, config) -> dict:
    """The package objective's hyperparameters from verl's actor config (``ActorConfig``, a DictConfig or
    a dict), checked by :func:`theory.objectives.validate_objective_params`:

        clip_cov: clip_ratio = policy_loss.clip_cov_ratio, cov_lb/cov_ub = policy_loss.clip_cov_lb/ub,
                  eps_low/eps_high = clip_ratio_low/high (each defaulting to clip_ratio)
        kl_cov:   kl_ratio = policy_loss.kl_cov_ratio, kl_coef = policy_loss.ppo_kl_coef

    ValueError: no config, an unknown objective, or a value out of range (a token fraction > 0.05 reads as
    a percent unless ``ENTROPY_MECH_VERL_ALLOW_LARGE_RATIO=1``)."""
    if config is None:
        raise ValueError("verl passed no actor config to the policy loss (config=None)")
    pl = _field(config, "policy_loss")
    allow = os.environ.get(ALLOW_LARGE_RATIO_ENV, "0") not in ("", "0", "false", "False")
    if objective == "clip_cov":
        eps = _value(config, "clip_ratio")
        low, high = _field(config, "clip_ratio_low"), _field(config, "clip_ratio_high")
        params = dict(clip_ratio=_value(pl, "clip_cov_ratio"), cov_lb=_value(pl, "clip_cov_lb"),
                      cov_ub=_value(pl, "clip_cov_ub"), eps_low=eps if low is None else low,
                      eps_high=eps if high is None else high)
    elif objective == "kl_cov":
        params = dict(kl_ratio=_value(pl, "kl_cov_ratio"), kl_coef=_value(pl, "ppo_kl_coef"))
    else:
        raise ValueError(f"unknown objective {objective!r}; the plugin provides clip_cov and kl_cov")
    params = {k: float(v) for k, v in params.items()}
    try:
        return validate_objective_params(objective, {**params, "allow_large_ratio": allow})
    except ValueError as err:
        raise ValueError(f"verl config for {objective}: {err} (verl fields: clip_cov_ratio, clip_cov_lb, "
                         "clip_cov_ub, kl_cov_ratio, ppo_kl_coef, clip_ratio{,_low,_high})") from None


# ----------------------------------------------------------------------------- collectives (no host sync)


def _all_reduce(t: torch.Tensor, group) -> torch.Tensor:
    if group is not None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def _exclusive_offset(count: torch.Tensor, group) -> torch.Tensor:
    """Σ of ``count`` (0-dim int64) over the ranks of ``group`` before this one (0 on one process)."""
    if group is None:
        return torch.zeros_like(count)
    parts = [torch.empty_like(count) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, count.contiguous(), group=group)
    return torch.stack(parts)[: dist.get_rank(group)].sum()


def _ordered_bits(keys: torch.Tensor) -> torch.Tensor:
    """int64 codes whose unsigned order (sign bit flipped) is the float order of ``keys`` (−0.0 = +0.0)."""
    bits = (keys.to(torch.float64) + 0.0).view(torch.int64)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFFFFFFFFFF, bits)
    return bits ^ torch.iinfo(torch.int64).min


def global_top_k(keys: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor, group=None) -> torch.Tensor:
    """Bool mask (``keys``' shape) of the min(k, E) entries with the largest ``keys`` among the E eligible
    entries of *all* ranks of ``group``, ties broken by (rank, flattened position), i.e. what
    :func:`theory.cov_selection.top_k_mask` selects on the ranks' tensors concatenated in rank order.

    A radix select on the 64-bit order-preserving codes of the keys: 8 rounds, each one all-reduce of a
    256-bin histogram of the next byte among the entries still tied with the threshold, then one all-gather
    of the tie counts. k stays a tensor; nothing waits for the device. ``keys`` must be finite where
    ``eligible`` (float); ``eligible`` bool; ``k`` 0-dim int64; group None: this process only."""
    if keys.shape != eligible.shape or eligible.dtype != torch.bool:
        raise ValueError(f"keys {tuple(keys.shape)} and a bool eligible mask of the same shape are required, "
                         f"got {tuple(eligible.shape)} {eligible.dtype}")
    dev = keys.device
    code = _ordered_bits(keys).reshape(-1)
    match = eligible.reshape(-1).clone()
    above = torch.zeros_like(match)
    need = k.to(dev, torch.int64).reshape(())
    for r in range(8):
        d = (code >> (56 - 8 * r)) & 0xFF
        hist = torch.zeros(257, dtype=torch.int64, device=dev)
        hist.scatter_add_(0, torch.where(match, d, 256), torch.ones_like(d))
        hist = _all_reduce(hist[:256].contiguous(), group)
        if r == 0:
            need = torch.minimum(need, hist.sum())
        ge = hist.flip(0).cumsum(0).flip(0)          # ge[j] = #entries still tied with digit >= j
        j = (ge >= need).sum() - 1                     # the threshold's digit (255 when need = 0)
        above |= match & (d > j)
        need = need - (ge - hist).gather(0, j.reshape(1)).squeeze(0)  # gather: a tensor index would sync
        match &= d == j
    ordinal = match.cumsum(0) - 1 + _exclusive_offset(match.sum(), group)
    return (above | (match & (ordinal < need))).reshape(keys.shape)


_M32 = 0xFFFFFFFF


def _mul32(x, c: int):
    """(x·c) mod 2³² for int64 x in [0, 2³²) and c in [0, 2³²), in one int64 product that cannot overflow:
    c < 2³¹ as it is, else c − 2³² (same residue, |c − 2³²| < 2³¹, so |x·c'| < 2⁶³); ``& (2³² − 1)`` takes
    the residue of the two's-complement value."""
    return (x * (c if c < 1 << 31 else c - (1 << 32))) & _M32


def _hash32(x):
    """A 32-bit integer mixer (xor-shift-multiply, "lowbias32") on int64 values in [0, 2³²) (a tensor or an
    int)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _call_key(seed: int, counter: int) -> int:
    """The 32-bit key of one loss call (Python ints: the same arithmetic as on tensors)."""
    return _hash32(_hash32(seed & _M32) ^ (counter & _M32))


@functools.lru_cache(maxsize=16)
def _col_hashes(cols: int, device: torch.device) -> torch.Tensor:
    return _hash32(torch.arange(cols, device=device, dtype=torch.int64) ^ 0x5BD1E995)


def _position_hashes(rows: torch.Tensor, cols: int) -> torch.Tensor:
    """G[r, c] = H(H(r ⊕ 0x9E3779B9) ⊕ H(c ⊕ 0x5BD1E995)) ``[len(rows), cols]``: a fixed 32-bit scramble of
    each token's global position (``rows``: int64 global row indices), the same on every rank and call."""
    return _hash32(_hash32((rows & _M32) ^ 0x9E3779B9)[:, None] ^ _col_hashes(cols, rows.device))


@functools.lru_cache(maxsize=8)
def _local_position_hashes(n_rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """:func:`_position_hashes` of rows 0 … n_rows − 1 (one process: a batch's rows are the global rows),
    cached: they depend on the shape only."""
    return _position_hashes(torch.arange(n_rows, device=device, dtype=torch.int64), cols)


def uniform_keys(seed: int, counter: int, rows: torch.Tensor, cols: int) -> torch.Tensor:
    """Counter-based U[0, 1) keys ``[len(rows), cols]`` (float64 multiples of 2⁻³²): H(G[r, c] ⊕ key(seed,
    counter)) with H the 32-bit mixer and G :func:`_position_hashes`, a function of (seed, counter, row,
    column) only, so a token gets the same key whichever rank holds it. ``rows``: int64 global row indices.
    (Equal keys are possible, p ≈ c²/2³³ among c candidates; ties go to the first position.)"""
    bits = _hash32(_position_hashes(rows, cols) ^ _call_key(seed, counter))
    return bits.to(torch.float64) * 2.0 ** -32


def _local_random_top_k(seed: int, counter: int, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """:func:`theory.cov_selection.top_k_mask` of :func:`uniform_keys` (rows 0 … B − 1) on CPU, hashing only
    the eligible tokens' keys: the k largest 32-bit hashes (the keys are hash·2⁻³², so the same order), ties
    by position."""
    flat = eligible.reshape(-1).nonzero().squeeze(1)                # ascending positions
    kk = min(int(k), flat.numel())
    if kk == flat.numel():
        return eligible.clone()
    out = torch.zeros_like(eligible)
    if kk > 0:
        positions = _local_position_hashes(eligible.shape[0], eligible.shape[1], eligible.device).reshape(-1)
        bits = _hash32(positions[flat] ^ _call_key(seed, counter))
        top = torch.topk(bits, kk + 1)                              # sorted
        if bool(top.values[kk] < top.values[kk - 1]):               # no tie at the threshold
            pick = top.indices[:kk]
        else:                                                       # a stable sort breaks ties by position
            pick = torch.sort(bits, descending=True, stable=True).indices[:kk]
        out.reshape(-1)[flat[pick]] = True
    return out


# ----------------------------------------------------------------------------- the losses


def _scope_hooks(objective: str, group, counter: int, rows: int):
    """The :class:`theory.cov_selection.CovStats` hooks that make the objective's selection span ``group``
    (module docstring), and a dict that receives the group's token count N when the objective runs them.

    ``reduce`` all-reduces the objective's [Σ log π, Σ A, N]; ``choose`` picks KL-Cov's top-k scores or
    Clip-Cov's seeded random subset over the group. The objective computes ρ, the PPO terms, the Eq. 10
    scores and the eligible set once, for its loss and for this selection."""
    box: dict = {}
    seed = _seed() if objective == "clip_cov" else 0   # a bad ENTROPY_MECH_VERL_SEED fails before collectives

    def reduce(sums):
        sums = _all_reduce(sums, group)
        box["num_tokens"] = sums[2].to(torch.int64)
        return sums

    def choose(cov, eligible, k):
        if objective == "kl_cov":
            return top_k_mask(cov, eligible, k) if group is None else global_top_k(cov, eligible, k, group)
        dev = eligible.device
        if group is None and dev.type == "cpu":
            return _local_random_top_k(seed, counter, eligible, k)
        row0 = _exclusive_offset(torch.full((), rows, dtype=torch.int64, device=dev), group)
        global_rows = row0 + torch.arange(rows, device=dev)
        keys = uniform_keys(seed, counter, global_rows, eligible.shape[1])
        return top_k_mask(keys, eligible, k) if group is None else global_top_k(keys, eligible, k, group)

    return CovStats(reduce=reduce, choose=choose), box


def _check_log_prob(log_prob):
    if not isinstance(log_prob, torch.Tensor) or log_prob.dim() != 2:
        raise ValueError(f"log_prob must be a [B, T] tensor, got {getattr(log_prob, 'shape', log_prob)!r}")


def select_tokens(objective: str, old_log_prob, log_prob, advantages, response_mask, config) -> torch.Tensor:
    """The tokens ``[B, T]`` (bool) the next :func:`policy_loss` call of ``objective`` would select with these
    inputs (collective like it: call it on every rank; it consumes one call number, as a loss call does):
    the objective's registered selection hook with the plugin's scope hooks."""
    h = hyperparameters(objective, config)
    _check_log_prob(log_prob)
    counter = _STATE.calls
    _STATE.calls += 1
    stats, _ = _scope_hooks(objective, selection_group(), counter, log_prob.shape[0])
    with torch.no_grad():
        lp, old, adv, m, _ = prepare_tokens(log_prob, old_log_prob, advantages, response_mask)
        return objective_spec(objective).select(h, lp, old, adv, m, None, stats=stats).selected


def policy_loss(objective: str, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                config=None, rollout_is_weights=None):
    """verl policy loss of the package's ``objective`` ("clip_cov" or "kl_cov") on ``[B, T]`` tensors.

        L = agg_loss(ℓ ⊙ w, M, loss_agg_mode, **config.global_batch_info),   ℓ = theory.objectives.<objective>
        with the selection of the whole group (module docstring), w = rollout_is_weights (1 if None).

    One objective call computes everything (its ``stats`` hooks make the means, quota and choice span the
    group). Returns (0-dim loss, {metric: 0-dim detached tensor}). ValueError: bad hyperparameters or
    tensors."""
    h = hyperparameters(objective, config)
    _check_log_prob(log_prob)
    group, counter = selection_group(), _STATE.calls
    _STATE.calls += 1
    stats, box = _scope_hooks(objective, group, counter, log_prob.shape[0])
    fn = kl_cov if objective == "kl_cov" else clip_cov
    loss_mat, met = fn(log_prob, old_log_prob, advantages, response_mask, **h, stats=stats)
    m = response_mask if response_mask.dtype == torch.bool else response_mask != 0   # checked by fn
    if rollout_is_weights is not None:
        loss_mat = loss_mat * rollout_is_weights
    info = _field(config, "global_batch_info") or {}
    loss = agg_loss(loss_mat=loss_mat, loss_mask=m, loss_agg_mode=loss_agg_mode, **info)
    metrics = {"actor/em_" + key.split("/", 1)[1]: v for key, v in met.items()}
    if objective == "kl_cov":
        metrics["actor/ppo_kl"] = met[METRIC_ABS_LOG_RATIO]   # mean |log ρ| over this call
    else:
        metrics["actor/pg_clipfrac"] = met["objective/selected_frac"]
        metrics["actor/ppo_kl"] = met["objective/ppo_kl"]
    count = met["objective/selected_count"]   # the selection lies inside the mask
    metrics["actor/em_selected_count_global"] = count.clone() if group is None else _all_reduce(count.clone(),
                                                                                                 group)
    metrics["actor/em_num_tokens_global"] = box["num_tokens"]
    return loss, metrics


@register_policy_loss(CLIP_COV_NAME)
def compute_policy_loss_em_clip_cov(old_log_prob, log_prob, advantages, response_mask,
                                    loss_agg_mode: str = "token-mean", config=None, rollout_is_weights=None):
    """verl policy loss ``em_clip_cov``: :func:`theory.objectives.clip_cov` (see :func:`policy_loss`)."""
    return policy_loss("clip_cov", old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
                       rollout_is_weights)


@register_policy_loss(KL_COV_NAME)
def compute_policy_loss_em_kl_cov(old_log_prob, log_prob, advantages, response_mask,
                                  loss_agg_mode: str = "token-mean", config=None, rollout_is_weights=None):
    """verl policy loss ``em_kl_cov``: :func:`theory.objectives.kl_cov` (see :func:`policy_loss`)."""
    return policy_loss("kl_cov", old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
                       rollout_is_weights)


__all__ = ["ALLOW_LARGE_RATIO_ENV", "CLIP_COV_NAME", "KL_COV_NAME", "SEED_ENV", "VERL_DEFAULTS",
           "compute_policy_loss_em_clip_cov", "compute_policy_loss_em_kl_cov", "configure", "global_top_k",
           "hyperparameters", "policy_loss", "select_tokens", "selection_group",
           "uniform_keys"]
