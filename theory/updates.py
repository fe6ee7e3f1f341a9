"""Logit increments of policy-gradient-family rules on a tabular softmax policy, and the entropy
changes they predict.

* vanilla PG (Proposition 1):  Δz = η π ⊙ (A − E_π A)       (the paper writes η π ⊙ A, valid iff E_π A = 0)
* natural PG (Theorem 2):      Δz = η A                      (up to a constant shift, which H ignores)
* entropy-regularised NPG (Cen et al. 2022, bandit form): Δz = η (A − τ log π)
* sampled REINFORCE: Δz = mean_i η A_i (e_{a_i} − π), unbiased for the PG step (docs/theory.md §1.8)

Shapes: ``logits`` and per-action ``advantages`` are ``[..., n]``; per-sample ``actions`` (integer) and
``advantages`` are ``[..., N]`` with the same leading dims as ``logits``.
"""

from __future__ import annotations

import torch

from ._checks import check_broadcastable, check_float_tensor, check_logits, check_same_shape, check_scalar
from .softmax import _centered_cov, _expect, _log_policy, _prepare, _zero_masked


def _per_action(logits, advantages, lr):
    check_logits(logits)
    check_float_tensor(advantages, "advantages")
    check_broadcastable(advantages, logits.shape, "advantages", "logits")
    lr = check_scalar(lr, "lr")
    z, a = _prepare(logits, advantages)
    ell, pi, valid = _log_policy(z)
    return z, _zero_masked(a.expand_as(z), valid), ell, pi, valid, lr


def _per_sample(logits, actions, advantages, lr):
    check_logits(logits)
    if not isinstance(actions, torch.Tensor) or actions.dtype not in (torch.int32, torch.int64):
        raise ValueError("actions must be an integer torch.Tensor of shape [..., N]")
    check_float_tensor(advantages, "advantages", min_dim=1)
    check_same_shape(actions, advantages, "actions", "advantages")
    if actions.shape[:-1] != logits.shape[:-1]:
        raise ValueError(
            f"actions has leading shape {tuple(actions.shape[:-1])} but logits has {tuple(logits.shape[:-1])}"
        )
    if actions.shape[-1] < 1:
        raise ValueError("need at least one sample per state (actions.shape[-1] >= 1)")
    n = logits.shape[-1]
    if (actions < 0).any() or (actions >= n).any():
        raise ValueError(f"actions must lie in [0, {n})")
    lr = check_scalar(lr, "lr")
    z, adv = _prepare(logits, advantages)
    ell, pi, valid = _log_policy(z)
    if not valid.gather(-1, actions.long()).all():
        raise ValueError("a sampled action is masked (its logit is -inf)")
    return z, actions.long(), adv, ell, pi, valid, lr


def pg_logit_step(logits: torch.Tensor, advantages: torch.Tensor, lr: float,
                  centered: bool = True) -> torch.Tensor:
    """Logit step of exact vanilla policy gradient (paper Proposition 1, docs/theory.md §1.6):

        Δz = η ∇_z E_π[A] = η π ⊙ (A − E_π A) = η F A.

    With ``centered=False`` it returns the paper's literal η π ⊙ A, which equals the true step only
    when E_π A = 0 (the paper's Lemma 3); otherwise it adds a spurious −η c Cov_π(ℓ, π), c = E_π A,
    to the first-order entropy prediction.

    Args:
      logits: ``[..., n]``; advantages: per-action advantages broadcastable to ``[..., n]``; lr: η.
    Returns:
      ``[..., n]`` logit increment (0 at masked actions).
    """
    z, a, ell, pi, valid, lr = _per_action(logits, advantages, lr)
    return _pg_step(pi, a, lr, centered)


def _pg_step(pi: torch.Tensor, a: torch.Tensor, lr: float, centered: bool) -> torch.Tensor:
    if centered:
        a = a - _expect(pi, a).unsqueeze(-1)
    return lr * pi * a


def npg_logit_step(logits: torch.Tensor, advantages: torch.Tensor, lr: float) -> torch.Tensor:
    """Logit step of natural policy gradient on a tabular softmax (paper Theorem 2; Agarwal et al. 2021):

        Δz = η F⁺ ∇_z E_π[A] = η A   (up to a constant shift, to which π and H are blind).

    Args:
      logits: ``[..., n]``; advantages: broadcastable to ``[..., n]``; lr: η.
    Returns:
      ``[..., n]`` logit increment (0 at masked actions).
    """
    z, a, ell, pi, valid, lr = _per_action(logits, advantages, lr)
    return lr * a


def entropy_regularized_npg_logit_step(
    logits: torch.Tensor, advantages: torch.Tensor, lr: float, tau: float
) -> torch.Tensor:
    """Entropy-regularised NPG step (Cen et al. 2022; docs/theory.md §1.13), bandit/logit form:

        Δz = η (A − τ log π),  i.e. z ← (1 − ητ) z + η A + const,

    whose fixed point is softmax(A/τ) and which contracts at rate (1 − ητ) per step.

    Args:
      logits: ``[..., n]``; advantages: broadcastable to ``[..., n]``; lr: η; tau: τ ≥ 0.
    Returns:
      ``[..., n]`` logit increment (0 at masked actions).
    """
    tau = check_scalar(tau, "tau", nonnegative=True)
    z, a, ell, pi, valid, lr = _per_action(logits, advantages, lr)
    return lr * (a - tau * ell)


def sampled_logit_step(
    logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, lr: float
) -> torch.Tensor:
    """Sampled REINFORCE step on the logits — the token-level gradient of mean_i A_i log π(a_i):

        Δz = (1/N) Σ_i η A_i (e_{a_i} − π).

    E_{a~π}[η A_a (e_a − π)] = η π ⊙ (A − E_π A) (docs/theory.md §1.8): unbiased for :func:`pg_logit_step`.

    Args:
      logits: ``[..., n]``; actions: integer ``[..., N]``; advantages: ``[..., N]`` (one per sample); lr: η.
    Returns:
      ``[..., n]`` logit increment.
    """
    z, actions, adv, ell, pi, valid, lr = _per_sample(logits, actions, advantages, lr)
    counts = torch.zeros_like(z).scatter_add_(-1, actions, adv)  # Σ_i A_i e_{a_i}   [..., n]
    n_samples = actions.shape[-1]
    return lr * (counts - adv.sum(-1, keepdim=True) * pi) / n_samples


def predicted_entropy_change(
    logits: torch.Tensor, advantages: torch.Tensor, lr: float, rule: str, centered: bool = True
) -> torch.Tensor:
    """First-order entropy change predicted by the paper's theorems from the advantages alone:

        rule="pg"  (Theorem 1): ΔH ≈ −η Cov_π(log π, π ⊙ (A − E_π A))   (centered=False: π ⊙ A, as printed)
        rule="npg" (Theorem 2): ΔH ≈ −η Cov_π(log π, A)

    Args:
      logits: ``[..., n]``; advantages: broadcastable to ``[..., n]``; lr: η; rule: "pg" or "npg".
    Returns:
      ``[...]``.
    """
    if rule not in ("pg", "npg"):
        raise ValueError(f"unknown rule {rule!r}; choose 'pg' or 'npg'")
    z, a, ell, pi, valid, lr = _per_action(logits, advantages, lr)
    step = _pg_step(pi, a, lr, centered) if rule == "pg" else lr * a
    return -_centered_cov(pi, ell, step)


def _discriminator(ell: torch.Tensor, pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S_b = π_b (ℓ_b + H) and E_π S = Σ_b π_b² (ℓ_b + H) = Cov_π(ℓ, π) ≥ 0."""
    h = -_expect(pi, ell)
    s = pi * (ell + h.unsqueeze(-1))
    return s, _expect(pi, s)


def sample_entropy_contribution(
    logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, lr: float
) -> torch.Tensor:
    """Per-sample first-order entropy change of the single-sample step η A_a (e_a − π) (docs/theory.md §1.8):

        ΔH⁽¹⁾(a) = −Cov_π(ℓ, η A_a (e_a − π)) = −η A_a (S_a − E_π S),   S_b = π_b (log π_b + H).

    A sampled token rarer than typical (log π_a < −H) with A > 0 raises entropy. The mean over the N
    samples equals :func:`first_order_entropy_change` of :func:`sampled_logit_step`.

    Args:
      logits: ``[..., n]``; actions: integer ``[..., N]``; advantages: ``[..., N]``; lr: η.
    Returns:
      ``[..., N]``.
    """
    z, actions, adv, ell, pi, valid, lr = _per_sample(logits, actions, advantages, lr)
    s, es = _discriminator(ell, pi)
    s_a = s.gather(-1, actions)
    return -lr * adv * (s_a - es.unsqueeze(-1))


def expected_sampled_entropy_change(
    logits: torch.Tensor, advantages: torch.Tensor, lr: float, order: int = 2
) -> torch.Tensor:
    """Expected entropy change of one single-sample REINFORCE step, a ~ π, to a given order
    (docs/theory.md §1.8, "noise-induced second-order drift"):

        E_a[ΔH] ≈ −η Cov_π(ℓ, π ⊙ Ā)
                  − (η²/2) E_a[A_a² (Var_π(e_a − π) + E_π[(ℓ + H)(e_a − π − E_π(e_a − π))²])].

    The η² term is the second-order term of each sampled direction, averaged; it differs from the second
    order of the *expected* step and is not sign-definite. Cost O(n²) per state (enumerates actions).

    Args:
      logits: ``[..., n]``; advantages: per-action, broadcastable to ``[..., n]``; lr: η; order: 1 or 2.
    Returns:
      ``[...]``.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    z, a, ell, pi, valid, lr = _per_action(logits, advantages, lr)
    n = z.shape[-1]
    eye = torch.eye(n, dtype=z.dtype, device=z.device)
    # direction for sampled action a (row a): d_a = η A_a (e_a − π)           [..., n(a), n(b)]
    d = lr * a.unsqueeze(-1) * (eye - pi.unsqueeze(-2))
    d = _zero_masked(d, valid.unsqueeze(-2))
    ell_b, pi_b = ell.unsqueeze(-2), pi.unsqueeze(-2)
    h = -_expect(pi, ell)[..., None, None]
    dc = d - _expect(pi_b, d).unsqueeze(-1)
    first = -_expect(pi_b, (ell_b + h) * dc)  # −Cov_π(ℓ, d_a)                 [..., n(a)]
    total = first
    if order == 2:
        total = first - 0.5 * (_expect(pi_b, dc * dc) + _expect(pi_b, (ell_b + h) * dc * dc))
    return _expect(pi, total)
