"""Reduce a token-level loss matrix ``[B, T]`` to the scalar that is differentiated.

The four modes are those of verl's ``agg_loss`` (docs/ecosystem.md §1.8). With
``L`` the loss matrix, ``M`` the 0/1 token mask, ``n_b = Σ_t M_bt`` the valid tokens of row ``b`` and
``S`` the set of non-empty rows:

==========================  ==================================================  =========================
mode                        value                                               default denominator
==========================  ==================================================  =========================
``token-mean``              Σ_bt L·M / N                                        N = Σ_bt M  (DAPO)
``seq-mean-token-mean``     Σ_{b∈S} (Σ_t L·M / n_b) / G                         G = |S|     (GRPO)
``seq-mean-token-sum``      Σ_{b∈S} (Σ_t L·M) / G                               G = |S|
``seq-mean-token-sum-norm`` Σ_bt L·M / C                                        C = T       (Dr.GRPO)
==========================  ==================================================  =========================

**Micro-batch invariance.** Every mode is a sum over rows divided by one denominator, so passing the
denominator of the *whole* mini-batch (``global_token_count`` = N, ``global_seq_count`` = G, or a fixed
``norm_constant`` = C) makes the losses of its micro-batches *sum* to the whole-batch loss, and their
gradients accumulate to the whole-batch gradient exactly (up to rounding). :func:`global_denominator`
gives the one denominator a mode uses, from the mini-batch mask, as ``aggregate``'s keyword argument
(:func:`global_counts` gives both counts; all-reduce them across data-parallel ranks yourself when each
rank holds only its shard of the mask; with gradient *averaging* across R ranks multiply the loss by R,
as verl's ``× dp_size``).
Without a global denominator each call normalises by its own counts, which is the legacy verl /
official-repo behaviour whose result depends on how the batch is split.

Notes on ``seq-mean-token-sum-norm``: verl divides the token sum by ``loss_mask.shape[-1]`` and does
*not* divide by the number of sequences; Dr.GRPO's ``1/G`` is a constant for a fixed group size, so
``norm_constant = G · T_max`` reproduces the paper's normalisation exactly. Always pass a fixed
``norm_constant`` when micro-batches are padded to different lengths.

Shapes: ``loss_matrix`` and ``mask`` are ``[..., T]`` (normally ``[B, T]``); every leading index is one
sequence. Nothing here synchronises with the host, so it runs on GPU unchanged.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_float_tensor, check_mask, check_same_shape, check_scalar, compute_dtype
from .names import AGG_MODES, AggMode  # the mode names (verl's loss_agg_mode)


# ----------------------------------------------------------------------------------------------------
# validation shared with theory.objectives
# ----------------------------------------------------------------------------------------------------


def _check_token_tensor(x, name: str, *, values: bool = True) -> torch.Tensor:
    """Shape/dtype checks always; value checks (NaN/inf) only on CPU, where they cost no device sync,
    and only if ``values`` (a caller checking several tensors at once uses :func:`_check_token_values`).

    On an accelerator a value check would need ``.item()`` (a host synchronisation), which the
    objectives promise never to do; there, garbage values surface as NaN losses instead.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"{name} must have a token axis (shape [..., T]), got a 0-dim tensor")
    if values and x.device.type == "cpu":
        check_float_tensor(x, name)
    return x


def _check_token_values(named: dict) -> None:
    """The NaN/inf check of :func:`_check_token_tensor` for several CPU tensors ``{name: x}`` with one
    host read: a finite sum of their sums proves them all finite; otherwise (a NaN or inf, or a sum that
    overflows) each is checked on its own, which raises for the first offender."""
    xs = [x for x in named.values() if x.device.type == "cpu" and x.numel()]
    if math.isfinite(sum(float(x.detach().sum()) for x in xs)):
        return
    for name, x in named.items():
        if x.device.type == "cpu":
            check_float_tensor(x, name)


def _masked_zero(x: torch.Tensor, m: torch.Tensor, *, finite: bool) -> torch.Tensor:
    """``torch.where(m, x, 0)`` (``[B, T]`` each, m bool). ``finite``: x is known finite (CPU inputs are
    checked), so the product x·m is exact and is used instead (on CPU a bool ``where`` costs ~4 float
    products); the only difference is the sign of a masked zero (−0.0 where x < 0)."""
    return x * m.view(torch.uint8) if finite else torch.where(m, x, 0.0)


def _check_token_mask(mask, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Bool view of a bool or 0/1 mask of ``like``'s shape (0/1 content checked on CPU only)."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    check_same_shape(mask, like, name, "the tensor it masks")
    if mask.device != like.device:
        raise ValueError(f"{name} is on {mask.device} but the tensor it masks is on {like.device}")
    if mask.dtype == torch.bool:
        return mask
    if mask.device.type == "cpu":
        return check_mask(mask, like, name)
    return mask != 0


def _check_count(value, name: str) -> torch.Tensor | float | None:
    """A denominator: ``None``, a positive Python number, or a (0-dim) tensor left unchecked on device."""
    if value is None or isinstance(value, torch.Tensor):
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        return value
    return check_scalar(value, name, positive=True)


# ----------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Σ_{i: M_i=1} x_i over ``dim`` (all axes if ``None``).

    Masked entries are excluded with ``torch.where``, so even inf/NaN padding contributes neither value
    nor gradient.

    Args:
      x: ``[..., T]`` floating tensor.
      mask: bool or 0/1 tensor of ``x``'s shape.
      dim: axis or axes to reduce; ``None`` reduces everything to a 0-dim tensor.
    Returns:
      the masked sum, in float32 (float64 if ``x`` is float64).
    """
    _check_token_tensor(x, "x")
    m = _check_token_mask(mask, x)
    xx = x.to(compute_dtype(x))
    z = torch.where(m, xx, torch.zeros_like(xx))
    return z.sum() if dim is None else z.sum(dim=dim)


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...] | None = None
) -> torch.Tensor:
    """Σ_i M_i x_i / Σ_i M_i over ``dim`` (all axes if ``None``); 0 where nothing is unmasked.

    Args:
      x: ``[..., T]`` floating tensor.
      mask: bool or 0/1 tensor of ``x``'s shape.
      dim: axis or axes to reduce; ``None`` reduces everything to a 0-dim tensor.
    Returns:
      the masked mean (0 for an all-masked slice, never NaN), float32 or float64.
    """
    s = masked_sum(x, mask, dim)
    m = _check_token_mask(mask, x)
    n = m.sum() if dim is None else m.sum(dim=dim)
    return s / n.clamp_min(1).to(s.dtype)


def global_counts(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Denominators of the whole mini-batch, to pass to :func:`aggregate` for every micro-batch.

        global_token_count = Σ_bt M_bt,   global_seq_count = #{b : Σ_t M_bt > 0}.

    Args:
      mask: ``[..., T]`` bool or 0/1 mask of the *whole* mini-batch (all-reduce the counts across
        data-parallel ranks when the mini-batch is sharded).
    Returns:
      ``{"global_token_count": 0-dim int64, "global_seq_count": 0-dim int64}``; use as
      ``aggregate(L_mb, M_mb, mode, **global_counts(M))``.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dim() < 1:
        raise ValueError("mask must have a token axis (shape [..., T])")
    m = mask if mask.dtype == torch.bool else mask != 0
    return {"global_token_count": m.sum(), "global_seq_count": m.any(dim=-1).sum()}


def global_denominator(
    mask: torch.Tensor, mode: str | AggMode, *, norm_constant: torch.Tensor | float | None = None
) -> dict[str, torch.Tensor | float]:
    """The denominator of ``mode`` for a whole (global) batch, as the keyword argument of :func:`aggregate`
    to pass with each of its micro-batches, so that their losses sum to the whole batch's loss:

        token-mean:               {"global_token_count": max(Σ_bt M_bt, 1)}
        seq-mean-token-mean/-sum: {"global_seq_count": max(#{b : Σ_t M_bt > 0}, 1)}
        seq-mean-token-sum-norm:  {"norm_constant": norm_constant, default T = mask.shape[-1]}

    These are the denominators :func:`aggregate` itself uses on the whole batch (an all-masked batch
    gives 1, so its loss is 0), i.e. for every split of the rows into micro-batches ``idx``::

        Σ_idx aggregate(L[idx], M[idx], mode, **global_denominator(M, mode)) == aggregate(L, M, mode)

    Args:
      mask: ``[..., T]`` bool or 0/1 mask of the *whole* batch (when data-parallel ranks hold only
        their shards, all-reduce :func:`global_counts` instead).
      mode: one of :data:`AGG_MODES`.
      norm_constant: C for ``seq-mean-token-sum-norm`` (e.g. Dr. GRPO's rows × maximum response
        length); ignored by the other modes.
    Returns:
      a one-entry dict: a 0-dim int64 tensor on ``mask``'s device (no host synchronisation), or the
      norm constant.
    """
    try:
        mode = AggMode(mode)
    except ValueError:
        raise ValueError(f"unknown aggregation mode {mode!r}; known modes: {', '.join(AGG_MODES)}") from None
    if mode is AggMode.SEQ_MEAN_TOKEN_SUM_NORM:
        if norm_constant is None:
            if not isinstance(mask, torch.Tensor) or mask.dim() < 1:
                raise ValueError("mask must be a torch.Tensor with a token axis (shape [..., T])")
            return {"norm_constant": float(mask.shape[-1])}
        return {"norm_constant": _check_count(norm_constant, "norm_constant")}
    counts = global_counts(mask)
    if mode is AggMode.TOKEN_MEAN:
        return {"global_token_count": counts["global_token_count"].clamp_min(1)}
    return {"global_seq_count": counts["global_seq_count"].clamp_min(1)}


def aggregate(
    loss_matrix: torch.Tensor,
    mask: torch.Tensor,
    mode: str | AggMode = "token-mean",
    *,
    global_token_count: torch.Tensor | float | None = None,
    global_seq_count: torch.Tensor | float | None = None,
    norm_constant: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Scalar loss from a token loss matrix (verl ``agg_loss``, docs/ecosystem.md §1.8; see module table).

        token-mean:               Σ_bt L·M / N
        seq-mean-token-mean:      Σ_b [n_b>0] (Σ_t L·M / n_b) / G
        seq-mean-token-sum:       Σ_b (Σ_t L·M) / G
        seq-mean-token-sum-norm:  Σ_bt L·M / C

    Args:
      loss_matrix: ``[..., T]`` per-token losses (e.g. from :mod:`theory.objectives`).
      mask: bool or 0/1 of the same shape; masked entries contribute nothing (value or gradient).
      mode: one of :data:`AGG_MODES`.
      global_token_count: N for ``token-mean``; default the unmasked tokens of this call.
      global_seq_count: G for the two ``seq-mean`` modes; default the non-empty rows of this call.
      norm_constant: C for ``seq-mean-token-sum-norm`` (verl ``loss_scale_factor``); default
        ``loss_matrix.shape[-1]``.
      Denominators that do not apply to ``mode`` must be left ``None``. Pass whole-mini-batch values
      (:func:`global_denominator`) to make micro-batch losses sum to the mini-batch loss.
    Returns:
      0-dim tensor (float32, or float64 for float64 input); 0 when nothing is unmasked.
    Raises:
      ValueError: unknown mode, bad shapes/dtypes, NaN (checked on CPU), a non-positive denominator,
        or a denominator given for a mode that does not use it.
    """
    _check_token_tensor(loss_matrix, "loss_matrix")
    m = _check_token_mask(mask, loss_matrix)
    try:
        mode = AggMode(mode)
    except ValueError:
        raise ValueError(f"unknown aggregation mode {mode!r}; known modes: {', '.join(AGG_MODES)}") from None
    n_tok = _check_count(global_token_count, "global_token_count")
    n_seq = _check_count(global_seq_count, "global_seq_count")
    c_norm = _check_count(norm_constant, "norm_constant")
    used = {
        AggMode.TOKEN_MEAN: "global_token_count",
        AggMode.SEQ_MEAN_TOKEN_MEAN: "global_seq_count",
        AggMode.SEQ_MEAN_TOKEN_SUM: "global_seq_count",
        AggMode.SEQ_MEAN_TOKEN_SUM_NORM: "norm_constant",
    }[mode]
    for name, val in (("global_token_count", n_tok), ("global_seq_count", n_seq), ("norm_constant", c_norm)):
        if val is not None and name != used:
            raise ValueError(f"{name} does not apply to mode {mode.value!r} (it uses {used})")

    dtype = compute_dtype(loss_matrix)
    lm = loss_matrix.to(dtype)
    lm = torch.where(m, lm, torch.zeros_like(lm))                      # [..., T], 0 at masked tokens

    if mode is AggMode.TOKEN_MEAN:
        return lm.sum() / _denominator(n_tok, m.sum(), lm)
    if mode is AggMode.SEQ_MEAN_TOKEN_SUM_NORM:
        if c_norm is None:
            return lm.sum() / float(loss_matrix.shape[-1])
        return lm.sum() / _denominator(c_norm, None, lm)
    seq_sum = lm.sum(dim=-1)                                           # [...]
    n_b = m.sum(dim=-1)                                                # [...]
    if mode is AggMode.SEQ_MEAN_TOKEN_MEAN:
        seq_val = seq_sum / n_b.clamp_min(1).to(dtype)                 # empty rows give 0/1 = 0
    else:
        seq_val = seq_sum
    return seq_val.sum() / _denominator(n_seq, (n_b > 0).sum(), lm)


def _denominator(given, local: torch.Tensor | None, like: torch.Tensor):
    """``given`` as is (a float, or a tensor moved to ``like``), else the local count clamped to >= 1."""
    if given is None:
        return local.to(device=like.device, dtype=like.dtype).clamp_min(1)
    if isinstance(given, torch.Tensor):
        return given.to(device=like.device, dtype=like.dtype)
    return given
