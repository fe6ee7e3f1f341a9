"""The per-token pieces every objective of :mod:`theory.objectives` is built from (paper Eq. 4, §4.2) and
their gradient with respect to log π_θ in closed form (docs/theory.md §1.10, "The gradient in closed form").

With d = log π_θ(y) − log π_old(y) (0 at masked tokens) and the clamped ratio ρ = exp(clamp(d, ±20)):

    vanilla      L = −A ρ                                    ∂L/∂log π = −A ρ · [|d| ≤ 20]
    PPO clip     L = max(−A ρ, −A clip(ρ, 1 − ε_l, 1 + ε_h))   ∂L/∂log π = −A ρ · [|d| ≤ 20] · [not clipped]
    KL-Cov term  L = β |d| on the selected tokens             ∂L/∂log π = β sign(d)
    Clip-Cov     selected tokens: L = 0                       ∂L/∂log π = 0

(the clip is active where −A·clip(ρ) > −Aρ strictly; at |d| = 20 and at a tie of the two PPO branches the
derivative is the unclipped −Aρ, what autograd's inclusive clamp and its even split of a tie of ``max``
sum to). The objectives compute the loss values without autograd and hand them, with this derivative D,
to :func:`with_gradient`: the backward pass is then one multiplication g·D per token instead of autograd's
chain through where → maximum → mul → clamp → exp → clamp → sub → where (and no saved masks). Same loss
values bit for bit; the gradient equals autograd's through the expression up to float rounding (the
product g·(−Aρ) is associated differently). ``tests/test_theory_surrogate.py`` checks it against autograd
on the naive expression in float64, ties, clamps and masked tokens included.
"""

from __future__ import annotations

import torch

from ._checks import host_readable
from .aggregation import _masked_zero

#: |log ρ| is clamped to this before ``exp`` (verl ``vanilla``); also used by the k3 estimators.
LOG_RATIO_CLAMP = 20.0


class _WithGradient(torch.autograd.Function):
    """value (computed without autograd) as a function of x whose gradient is ``grad · derivative``. The
    classic ``forward(ctx, ...)`` form: the ``setup_context`` form that ``torch.func`` needs costs ~40 µs more
    per call on CPU, and nothing here differentiates the objectives with ``torch.func``."""

    @staticmethod
    def forward(ctx, x, value, derivative):
        ctx.save_for_backward(derivative)
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        (derivative,) = ctx.saved_tensors
        return grad * derivative, None, None


def with_gradient(x: torch.Tensor, value: torch.Tensor, derivative: torch.Tensor) -> torch.Tensor:
    """``value`` attached to the graph of ``x`` elementwise: ∂value_i/∂x_j = δ_ij · derivative_i.

    Args:
      x: ``[B, T]`` float, the differentiable input (log π_θ in the compute dtype); if it does not require
        grad, ``value`` is returned as it is.
      value: ``[B, T]`` float, the loss matrix computed from ``x.detach()`` (no graph).
      derivative: ``[B, T]`` float, ∂value/∂x from the forward pass (the module docstring's table).
    Returns:
      ``value`` (same values), whose backward is one multiplication ``grad · derivative``.
    ValueError: shapes differ or ``value``/``derivative`` carry a graph."""
    if value.shape != x.shape or derivative.shape != x.shape:
        raise ValueError(f"x {tuple(x.shape)}, value {tuple(value.shape)} and derivative "
                         f"{tuple(derivative.shape)} must have the same shape")
    if value.requires_grad or derivative.requires_grad:
        raise ValueError("value and derivative must be computed without autograd (detached)")
    if not (x.requires_grad and torch.is_grad_enabled()):
        return value
    return _WithGradient.apply(x, value, derivative)


def log_ratio(log_prob: torch.Tensor, old_log_prob: torch.Tensor):
    """(d, c, ρ): d = log π_θ − log π_old, c = clamp(d, ±LOG_RATIO_CLAMP), ρ = exp(c); ``[B, T]`` each
    (log ρ of the ratio used is c, exactly)."""
    d = log_prob - old_log_prob
    c = torch.clamp(d, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return d, c, torch.exp(c)


def ratio_derivative(d: torch.Tensor, pg: torch.Tensor, inactive: torch.Tensor | None = None, *,
                     abs_d: torch.Tensor | None = None) -> torch.Tensor:
    """∂(−Aρ)/∂log π = −Aρ·[|d| ≤ 20], 0 also where ``inactive`` (bool ``[B, T]``: PPO clip active, token
    dropped); ``pg`` = −Aρ, ``abs_d`` = |d| if already computed. NaN in d or pg propagates (no comparison
    is true of NaN). On CPU (inputs checked finite, and reading a value costs no device wait) the clamp
    test is skipped when no |d| exceeds 20, and ``inactive`` zeroes by a product (exact: pg is finite)."""
    abs_d = d.abs() if abs_d is None else abs_d
    if host_readable(d) and d.numel() and float(abs_d.max()) <= LOG_RATIO_CLAMP:
        return pg if inactive is None else _masked_zero(pg, ~inactive, finite=True)
    off = abs_d > LOG_RATIO_CLAMP
    if inactive is not None:
        off = off | inactive
    return torch.where(off, 0.0, pg)


def ppo_terms(ratio: torch.Tensor, neg_adv: torch.Tensor, eps_low: float, eps_high: float):
    """PPO's per-token pieces (paper Eq. 4): (pg1, loss, clipped) with pg1 = −Aρ, loss = max(pg1,
    −A·clip(ρ, 1 − ε_l, 1 + ε_h)) and the bool ``[B, T]`` mask of tokens where the clip is active
    (−A·clip(ρ) > −Aρ strictly: ρ < 1 − ε_l with A < 0, or ρ > 1 + ε_h with A > 0; never at A = 0, so never
    at a masked token of the prepared inputs). ``neg_adv`` = −A."""
    pg1 = neg_adv * ratio
    pg2 = neg_adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    return pg1, torch.maximum(pg1, pg2), pg2 > pg1


def clip_counts(clipped: torch.Tensor, neg_adv: torch.Tensor):
    """(#clipped below, #clipped above) as 0-dim int64: a clipped token is clipped below iff A < 0
    (:func:`ppo_terms`), so #below − #above = Σ_clipped sign(−A), a float64 sum of ±1 (exact) instead of a
    second comparison pass. ``clipped`` bool, ``neg_adv`` = −A, ``[B, T]`` each."""
    n = torch.count_nonzero(clipped)
    s = _masked_zero(torch.sign(neg_adv), clipped, finite=True).sum(dtype=torch.float64).to(torch.int64)
    below = torch.div(n + s, 2, rounding_mode="floor")
    return below, n - below


__all__ = ["LOG_RATIO_CLAMP", "clip_counts", "log_ratio", "ppo_terms", "ratio_derivative",
           "with_gradient"]
