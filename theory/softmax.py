"""Softmax policies over a finite action set: log-probabilities, entropy, and moments under pi.

Conventions (shared by all of ``theory``): ``logits`` has shape ``[..., n]`` with any leading batch
dimensions and the actions on the last axis. A logit of ``-inf`` marks a masked action: probability 0,
no contribution to any sum, never a NaN. Computation is in float64 when an input is float64, else
float32. Expectations ``E``, ``Var`` and ``Cov`` are *population* moments under pi over the action axis
(a weighted covariance over the vocabulary), not sample statistics.
"""

from __future__ import annotations

import torch

from ._checks import check_broadcastable, check_logits, compute_dtype


def _prepare(logits: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    dtype = compute_dtype(logits, *others)
    return tuple(t.to(dtype) for t in (logits, *others))


def _log_policy(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log pi with masked entries set to 0, pi, unmasked-mask) for validated logits ``z``."""
    valid = z > float("-inf")
    ell = torch.log_softmax(z, dim=-1)  # z - logsumexp(z); stable for |z| up to float max
    pi = ell.exp()  # exactly 0 at masked actions (exp(-inf))
    return _zero_masked(ell, valid), pi, valid


def _expect(pi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """E_pi[x] over the last axis; ``x`` must already be zero (finite) at masked actions.

    Equals ``(pi * x).sum(-1)``; ``vecdot`` is one fused kernel (several times faster on CPU)."""
    return torch.linalg.vecdot(pi, x)


def _zero_masked(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # the check costs one boolean reduction; the fill a full copy, skipped in the common unmasked case
    return x if bool(valid.all()) else x.masked_fill(~valid, 0.0)


def log_policy(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the softmax policy, ℓ = z − logsumexp(z).

    Args:
      logits: ``[..., n]``; ``-inf`` marks a masked action.
    Returns:
      ``[..., n]`` log pi, ``-inf`` at masked actions.
    """
    check_logits(logits)
    (z,) = _prepare(logits)
    return torch.log_softmax(z, dim=-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of the softmax policy (nats): H = −Σ_a π_a log π_a  (paper Eq. 5, per state).

    Args:
      logits: ``[..., n]``; ``-inf`` marks a masked action (contributes 0).
    Returns:
      ``[...]`` entropy.
    """
    check_logits(logits)
    (z,) = _prepare(logits)
    ell, pi, _ = _log_policy(z)
    return -_expect(pi, ell)


def policy_covariance(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Covariance under the policy over the action axis: Cov_{a~π}(x_a, y_a) = E_π[(x − E_π x)(y − E_π y)].

    This is the covariance of Lemma 1 / Theorems 1-2 (paper §3): a π-weighted covariance over the full
    action set at one state, not a sample covariance. Values of ``x``/``y`` at masked actions are ignored
    (they may be ``-inf``, e.g. log π).

    Args:
      logits: ``[..., n]``.
      x, y: broadcastable to ``logits.shape``.
    Returns:
      ``[...]`` covariance.
    """
    check_logits(logits)
    for t, name in ((x, "x"), (y, "y")):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating torch.Tensor")
        check_broadcastable(t, logits.shape, name, "logits")
        if torch.isnan(t).any():
            raise ValueError(f"{name} contains NaN")
    z, x, y = _prepare(logits, x, y)
    _, pi, valid = _log_policy(z)
    x = _zero_masked(x.expand_as(z), valid)
    y = _zero_masked(y.expand_as(z), valid)
    if torch.isinf(x).any() or torch.isinf(y).any():
        raise ValueError("x and y must be finite at unmasked actions")
    return _centered_cov(pi, x, y)


def _centered_cov(pi: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E_π[(x − Ex)(y − Ey)], computed centred (more accurate than E[xy] − ExEy)."""
    xc = x - _expect(pi, x).unsqueeze(-1)
    yc = y - _expect(pi, y).unsqueeze(-1)
    return _expect(pi, xc * yc)
