"""How the entropy of a softmax policy moves when its logits move: z ↦ z + δ.

* exact change ΔH = H(z + δ) − H(z);
* Lemma 1 (paper §3.2, App. E.2): ΔH ≈ −Cov_π(log π, δ), the exact first-order term;
* the second-order term the paper omits (docs/theory.md §1.4):
  ΔH ≈ −Cov_π(ℓ, δ) − ½[Var_π(δ) + E_π((ℓ + H)(δ − E_π δ)²)];
* a rigorous bound on the first-order error (docs/theory.md §1.5): ½ R² (¼ + 2 log n), R = max δ − min δ.

All functions take ``logits [..., n]`` and ``delta`` broadcastable to it; ``-inf`` logits are masked
actions whose ``delta`` is ignored.
"""

from __future__ import annotations


import torch

from ._checks import check_broadcastable, check_float_tensor, check_logits
from .softmax import _centered_cov, _expect, _log_policy, _prepare, _zero_masked


def _validate_step(logits: torch.Tensor, delta: torch.Tensor, name: str = "delta"):
    check_logits(logits)
    check_float_tensor(delta, name)
    check_broadcastable(delta, logits.shape, name, "logits")
    z, d = _prepare(logits, delta)
    ell, pi, valid = _log_policy(z)
    return z, _zero_masked(d.expand_as(z), valid), ell, pi, valid


def entropy_gradient(logits: torch.Tensor) -> torch.Tensor:
    """Gradient of the entropy with respect to the logits: ∂H/∂z = −π ⊙ (log π + H) = −F z
    (F = diag π − π πᵀ; docs/theory.md §1.1, the step inside the proof of Lemma 1).

    Args:
      logits: ``[..., n]``.
    Returns:
      ``[..., n]``; 0 at masked actions; sums to 0 over the action axis.
    """
    check_logits(logits)
    (z,) = _prepare(logits)
    ell, pi, _ = _log_policy(z)
    h = -_expect(pi, ell)
    return -pi * (ell + h.unsqueeze(-1))


def entropy_change(logits: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Exact one-step entropy change ΔH = H(softmax(z + δ)) − H(softmax(z)).

    Args:
      logits: ``[..., n]``; delta: logit step, broadcastable to ``[..., n]``, finite.
    Returns:
      ``[...]``.
    """
    z, d, ell, pi, valid = _validate_step(logits, delta)
    ell_new, pi_new, _ = _log_policy(z + d)
    return _expect(pi, ell) - _expect(pi_new, ell_new)


def first_order_entropy_change(logits: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Lemma 1 (paper §3.2): ΔH ≈ ⟨∇_z H, δ⟩ = −Cov_{a~π}(log π(a), δ_a).

    Exact as a directional derivative; the error of the approximation is O(‖δ‖²) and bounded by
    :func:`first_order_error_bound`. Invariant to δ ↦ δ + c·1.

    Args:
      logits: ``[..., n]``; delta: broadcastable to ``[..., n]``.
    Returns:
      ``[...]``.
    """
    z, d, ell, pi, valid = _validate_step(logits, delta)
    return -_centered_cov(pi, ell, d)


def second_order_entropy_change(logits: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Second-order Taylor prediction of ΔH (docs/theory.md §1.4; absent from the paper):

        ΔH ≈ −Cov_π(ℓ, δ) − ½ [Var_π(δ) + E_π((ℓ + H)(δ − E_π δ)²)],   ℓ = log π.

    The residual is O(‖δ‖³). The ½Var term always lowers entropy (it is the KL term of
    H(π') − H(π) = −(E_π'ℓ − E_πℓ) − KL(π'‖π)).

    Args:
      logits: ``[..., n]``; delta: broadcastable to ``[..., n]``.
    Returns:
      ``[...]``.
    """
    z, d, ell, pi, valid = _validate_step(logits, delta)
    h = -_expect(pi, ell)
    dc = d - _expect(pi, d).unsqueeze(-1)
    var_d = _expect(pi, dc * dc)
    coskew = _expect(pi, (ell + h.unsqueeze(-1)) * dc * dc)
    return -_centered_cov(pi, ell, d) - 0.5 * (var_d + coskew)


def first_order_error_bound(logits: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Rigorous bound on the error of Lemma 1 (docs/theory.md §1.5):

        |ΔH − (−Cov_π(ℓ, δ))| ≤ ½ R² (¼ + 2 log n),

    with R = max δ − min δ over unmasked actions and n the number of unmasked actions
    (from |H''| ≤ R²(¼ + 2 log n) along the segment).

    Args:
      logits: ``[..., n]``; delta: broadcastable to ``[..., n]``.
    Returns:
      ``[...]`` non-negative bound.
    """
    z, d, ell, pi, valid = _validate_step(logits, delta)
    return _bound(d, valid)


def _bound(d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    big = torch.finfo(d.dtype).max
    r = d.masked_fill(~valid, -big).amax(-1) - d.masked_fill(~valid, big).amin(-1)
    n = valid.sum(-1).to(d.dtype)
    return 0.5 * r * r * (0.25 + 2.0 * torch.log(n))


def entropy_step_report(logits: torch.Tensor, delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Everything above for one step z ↦ z + δ, from one validation and one log-softmax per side:

        entropy = H(z),  exact = H(z + δ) − H(z),  first_order = −Cov_π(ℓ, δ)  (Lemma 1),
        second_order (docs/theory.md §1.4),  bound = ½ R² (¼ + 2 log n)  (docs/theory.md §1.5).

    Equal to calling :func:`~theory.entropy`, :func:`entropy_change`, :func:`first_order_entropy_change`,
    :func:`second_order_entropy_change` and :func:`first_order_error_bound` separately (tested), at a
    fraction of the cost for simulators that record all of them every step.

    Args:
      logits: ``[..., n]``; delta: broadcastable to ``[..., n]``.
    Returns:
      dict of ``[...]`` tensors with keys ``entropy, exact, first_order, second_order, bound``.
    """
    z, d, ell, pi, valid = _validate_step(logits, delta)
    h = -_expect(pi, ell)
    ell_new, pi_new, _ = _log_policy(z + d)
    dc = d - _expect(pi, d).unsqueeze(-1)
    lh = ell + h.unsqueeze(-1)
    first = -_expect(pi, lh * dc)
    pdc2 = pi * dc * dc
    second = first - 0.5 * (pdc2.sum(-1) + (lh * pdc2).sum(-1))
    return {"entropy": h, "exact": -_expect(pi_new, ell_new) - h, "first_order": first,
            "second_order": second, "bound": _bound(d, valid)}


def log_prob_change_norm_sq(logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """‖e_a − π‖² = 1 − 2π_a + Σ_b π_b² — the growth factor of log π_a under a sampled step
    (Δ log π_a = η A_a ‖e_a − π‖² + O(η²); docs/theory.md §1.8, Li 2025 arXiv 2506.12912).

    Args:
      logits: ``[..., n]``; action: integer ``[...]`` index of the sampled action.
    Returns:
      ``[...]``.
    """
    check_logits(logits)
    if not isinstance(action, torch.Tensor) or action.dtype not in (torch.int32, torch.int64):
        raise ValueError("action must be an integer torch.Tensor")
    if action.shape != logits.shape[:-1]:
        raise ValueError(f"action has shape {tuple(action.shape)}, expected {tuple(logits.shape[:-1])}")
    (z,) = _prepare(logits)
    _, pi, _ = _log_policy(z)
    pi_a = pi.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    return 1.0 - 2.0 * pi_a + (pi * pi).sum(-1)


__all__ = [
    "entropy_gradient",
    "entropy_change",
    "first_order_entropy_change",
    "second_order_entropy_change",
    "first_order_error_bound",
    "entropy_step_report",
    "log_prob_change_norm_sq",
]

