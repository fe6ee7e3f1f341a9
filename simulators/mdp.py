"""Discounted tabular MDP with exact policy evaluation by linear solve (docs/theory.md §3.6).

For π = softmax(z_s) per state, P_π(s, s') = Σ_a π(a|s) P(s'|s, a) and r_π(s) = Σ_a π(a|s) r(s, a):

    V^π = (I − γ P_π)⁻¹ r_π,     Q^π(s, a) = r(s, a) + γ Σ_s' P(s'|s, a) V^π(s'),     A = Q − V,
    d^π_ρ = (1 − γ) (I − γ P_πᵀ)⁻¹ ρ      (normalised discounted visitation, Agarwal et al. 2021),
    ∂V^π(ρ)/∂z_{s,a} = d^π_ρ(s)/(1 − γ) · π(a|s) A(s, a)                      (docs/theory.md §1.6).

So exact PG is Proposition 1 per state with η_s = η d(s)/(1 − γ), and NPG is Δz = η A/(1 − γ)
(docs/theory.md §1.7). Soft values (τ > 0, Cen et al. 2022) use r_π(s) = Σ_a π(a|s)(r(s, a) − τ log π(a|s)).
"""

from __future__ import annotations

import torch

from theory import log_policy

from .world_base import (
    Exact,
    TokenBatch,
    check_logits_shape,
    repeat_instances,
    sample_categorical,
    state_major_batch,
    uniform,
)


class TabularMDP:
    """A batch of B discounted MDPs: transitions P ``[B, S, A, S]``, rewards r ``[B, S, A]`` in [0, 1],
    start distribution ρ ``[B, S]``, discount γ ∈ [0, 1)."""

    def __init__(self, transitions: torch.Tensor, rewards: torch.Tensor, rho: torch.Tensor, gamma: float):
        if transitions.dim() != 4 or transitions.shape[1] != transitions.shape[3]:
            raise ValueError(f"transitions must be [B, S, A, S], got {tuple(transitions.shape)}")
        if rewards.shape != transitions.shape[:3]:
            raise ValueError(
                f"rewards must be [B, S, A] = {tuple(transitions.shape[:3])}, got {tuple(rewards.shape)}"
            )
        if rho.shape != transitions.shape[:2]:
            raise ValueError(f"rho must be [B, S] = {tuple(transitions.shape[:2])}, got {tuple(rho.shape)}")
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must lie in [0, 1), got {gamma}")
        self.P, self.r, self.rho, self.gamma = transitions, rewards, rho, float(gamma)
        self.batch, self.n_states, self.n_actions = rewards.shape

    @classmethod
    def random(
        cls,
        instances: int,
        seeds: int,
        n_states: int,
        n_actions: int,
        gamma: float,
        generator: torch.Generator,
        dtype=torch.float64,
        device="cpu",
    ) -> "TabularMDP":
        """Random MDPs: P(·|s, a) ~ Dirichlet(1, ..., 1), r ~ U(0, 1), ρ uniform (docs/theory.md §3.6)."""
        e = -torch.log(
            uniform((instances, n_states, n_actions, n_states), generator, dtype, device).clamp_min(1e-300)
        )
        transitions = e / e.sum(-1, keepdim=True)  # Dirichlet(1) rows
        rewards = uniform((instances, n_states, n_actions), generator, dtype, device)
        rho = torch.full((instances, n_states), 1.0 / n_states, dtype=dtype, device=device)
        return cls(
            repeat_instances(transitions, seeds),
            repeat_instances(rewards, seeds),
            repeat_instances(rho, seeds),
            gamma,
        )

    def _solve(self, pi: torch.Tensor, r_pi: torch.Tensor):
        """(V = (I − γP_π)⁻¹ r_π  [B, S],  d = (1 − γ)(I − γP_πᵀ)⁻¹ ρ  [B, S])."""
        p_pi = torch.einsum("bsa,bsat->bst", pi, self.P.to(pi.dtype))  # [B, S, S]
        eye = torch.eye(self.n_states, dtype=pi.dtype, device=pi.device)
        m = eye - self.gamma * p_pi
        v = torch.linalg.solve(m, r_pi.unsqueeze(-1)).squeeze(-1)
        d = (1.0 - self.gamma) * torch.linalg.solve(
            m.transpose(-1, -2), self.rho.to(pi.dtype).unsqueeze(-1)
        ).squeeze(-1)
        return v, d

    def exact(self, logits: torch.Tensor, tau: float = 0.0) -> Exact:
        """Exact V, Q, A (soft when τ > 0), visitation d, PG weight d/(1 − γ), NPG scale 1/(1 − γ).

        ``reward`` is the normalised return (1 − γ) V^π(ρ) of the unregularised reward, in [0, 1].

        Args:
          logits: ``[B, S, A]``; tau: entropy temperature τ ≥ 0.
        """
        check_logits_shape(logits, (self.batch, self.n_states, self.n_actions))
        ell = log_policy(logits)
        pi = ell.exp()
        r = self.r.to(logits.dtype)
        v, d = self._solve(pi, (pi * (r - tau * ell)).sum(-1))
        q = r + self.gamma * torch.einsum("bsat,bt->bsa", self.P.to(logits.dtype), v)
        reward = (d * (pi * r).sum(-1)).sum(-1)  # (1−γ) ρᵀ V⁰
        return Exact(
            q=q,
            v=v,
            adv=q - v.unsqueeze(-1),
            pg_weight=d / (1.0 - self.gamma),
            npg_scale=1.0 / (1.0 - self.gamma),
            agg_weight=d,
            reward=reward,
        )

    def optimal_reward(self, tol: float = 1e-12) -> torch.Tensor:
        """``[B]`` (1 − γ) V*(ρ) by value iteration run for ⌈log(tol)/log γ⌉ sweeps (error ≤ tol)."""
        import math

        sweeps = 1 if self.gamma == 0 else int(math.ceil(math.log(tol) / math.log(self.gamma))) + 1
        v = torch.zeros(self.batch, self.n_states, dtype=self.r.dtype, device=self.r.device)
        for _ in range(sweeps):
            v = (self.r + self.gamma * torch.einsum("bsat,bt->bsa", self.P, v)).amax(-1)
        return (1.0 - self.gamma) * (self.rho * v).sum(-1)

    def sample(
        self, logits: torch.Tensor, samples: int, generator: torch.Generator, groups: int = 1
    ) -> TokenBatch:
        """``samples`` actions at every state with the exact critic as return: R = Q(s, a), baseline V(s),
        coef = d(s)/((1 − γ)·samples) — an unbiased estimate of the exact PG step (one group per state)."""
        ex = self.exact(logits)
        actions = sample_categorical(logits, samples, generator)  # [B, S, N]
        q = ex.q.gather(-1, actions)
        coef = (ex.pg_weight / samples).unsqueeze(-1).expand_as(q)
        return state_major_batch(actions, q, ex.v.unsqueeze(-1).expand_as(q), coef)
