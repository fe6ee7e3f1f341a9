"""What every tabular world hands the update rules, and the sampling helpers the worlds share.

* :class:`Exact` — exact per-state values and advantages at the current logits, plus the per-state
  factor that turns Proposition 1's logit step into the true gradient of the expected return
  (docs/theory.md §1.6): ∂J/∂z_{s,a} = w(s) π(a|s) (A(s,a) − E_π A(s,·)).
* :class:`TokenBatch` — sampled responses laid out as GRPO-style token matrices.

Shapes: logits ``[B, S, n]`` (B independent runs, S states, n actions). Every world is a batch of ``B``
instances (``instances`` drawn worlds, each repeated ``seeds`` times).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from theory import log_policy


@dataclass
class Exact:
    """Exact quantities of a world at the current logits (all ``[B, ...]``).

    q: ``[B, S, n]`` action values Q(s, a) (soft values when evaluated with τ > 0).
    v: ``[B, S]`` state values V(s) = E_π Q(s, ·) (soft: + τ H(π_s)).
    adv: ``[B, S, n]`` A = Q − V.
    pg_weight: ``[B, S]`` w(s) with ∂J/∂z_s = w(s) π_s ⊙ (A_s − E A_s): ρ(s) in a contextual bandit,
      d^π_ρ(s)/(1−γ) in an MDP, the reach probability of the prefix in the tabular LM.
    npg_scale: NPG's factor: Δz = η · npg_scale · A (1/(1−γ) in an MDP, 1 otherwise).
    agg_weight: ``[B, S]`` weights (summing to 1) that aggregate per-state quantities: ρ, the normalised
      visitation (1−γ)d, or reach probability / L.
    reward: ``[B]`` expected return J(π) (success probability in the tabular LM).
    """

    q: torch.Tensor
    v: torch.Tensor
    adv: torch.Tensor
    pg_weight: torch.Tensor
    npg_scale: float
    agg_weight: torch.Tensor
    reward: torch.Tensor


@dataclass
class TokenBatch:
    """Sampled responses as token matrices (M responses of T tokens per run).

    state_ids: ``[B, M, T]`` long, the state (prefix) each token was emitted at.
    actions: ``[B, M, T]`` long, the emitted token.
    mask: ``[B, M, T]`` bool.
    rewards: ``[B, M]`` sampled return of each response.
    baseline: ``[B, M]`` exact value of the response's start state (REINFORCE baseline).
    coef: ``[B, M]`` weight c_i making Σ_i c_i (R_i − b_i) Σ_t ∇ log π(y_t) an unbiased estimate of ∇J.
    group_size: G; responses ``[g·G, (g+1)·G)`` form group g (same start state).
    state_major: True when T = 1 and M = S·G with response ``s·G + j`` at state s (bandit-like worlds).
    """

    state_ids: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    baseline: torch.Tensor
    coef: torch.Tensor
    group_size: int
    state_major: bool


def sample_categorical(logits: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n i.i.d. draws a ~ softmax(logits) per row by inverse CDF, a = #{k : F_k < u}, u ~ U(0, 1).

    Args:
      logits: ``[..., K]``; n: draws per row; generator: the run's ``torch.Generator``.
    Returns:
      ``[..., n]`` long in ``[0, K)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cdf = log_policy(logits).exp().cumsum(-1)  # [..., K]
    u = uniform((*logits.shape[:-1], n), generator, cdf.dtype, cdf.device)
    idx = (cdf.unsqueeze(-2) < u.unsqueeze(-1)).sum(-1)  # [..., n]
    return idx.clamp_max(logits.shape[-1] - 1)


def uniform(shape, generator: torch.Generator, dtype, device) -> torch.Tensor:
    """U(0, 1) draws from the run's generator (generated on CPU so CPU and CUDA runs see equal worlds)."""
    return torch.rand(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)


def repeat_instances(x: torch.Tensor, seeds: int) -> torch.Tensor:
    """``[instances, ...]`` → ``[instances·seeds, ...]`` (each drawn world shared by its seed replicas)."""
    return x.repeat_interleave(seeds, dim=0)


def state_major_batch(
    actions: torch.Tensor, rewards: torch.Tensor, baseline: torch.Tensor, coef: torch.Tensor
) -> TokenBatch:
    """Pack per-state samples into a state-major :class:`TokenBatch` with T = 1 (one group per state).

    Args:
      actions: ``[B, S, N]`` long; rewards, baseline, coef: ``[B, S, N]`` (see :class:`TokenBatch`).
    """
    if actions.dim() != 3 or not (actions.shape == rewards.shape == baseline.shape == coef.shape):
        raise ValueError("actions, rewards, baseline and coef must share one [B, S, N] shape")
    b, s, n = actions.shape
    states = torch.arange(s, device=actions.device).view(1, s, 1).expand(b, s, n)
    return TokenBatch(
        state_ids=states.reshape(b, s * n, 1),
        actions=actions.reshape(b, s * n, 1),
        mask=torch.ones(b, s * n, 1, dtype=torch.bool, device=actions.device),
        rewards=rewards.reshape(b, s * n),
        baseline=baseline.reshape(b, s * n),
        coef=coef.reshape(b, s * n),
        group_size=n,
        state_major=True,
    )


def check_logits_shape(logits: torch.Tensor, shape: tuple[int, ...]) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError("logits must be a floating torch.Tensor")
    if tuple(logits.shape) != tuple(shape):
        raise ValueError(f"logits have shape {tuple(logits.shape)}, this world expects {tuple(shape)}")
