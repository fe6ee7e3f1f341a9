"""The (contextual) bandit: S independent states, one action each, Bernoulli or exact rewards."""

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


class ContextualBandit:
    """Contextual bandit: S states drawn from ρ = uniform, K arms, mean rewards r(s, a) ~ U(0, 1).

    J(π) = Σ_s ρ(s) Σ_a π(a|s) r(s, a); exact gradient ∂J/∂z_s = ρ(s) π_s ⊙ (r_s − E_π r_s)
    (docs/theory.md §1.6). The K-armed bandit is the case S = 1. Sampled rewards are Bernoulli(r) or r itself.
    """

    def __init__(self, means: torch.Tensor, reward_noise: str = "bernoulli"):
        if means.dim() != 3:
            raise ValueError(f"means must be [B, S, K], got shape {tuple(means.shape)}")
        if reward_noise not in ("bernoulli", "none"):
            raise ValueError(f"unknown reward_noise {reward_noise!r}; choose 'bernoulli' or 'none'")
        self.means = means
        self.reward_noise = reward_noise
        self.batch, self.n_states, self.n_actions = means.shape

    @classmethod
    def random(
        cls,
        instances: int,
        seeds: int,
        n_states: int,
        n_actions: int,
        generator: torch.Generator,
        dtype=torch.float64,
        device="cpu",
        reward_noise: str = "bernoulli",
    ) -> "ContextualBandit":
        """Draw ``instances`` worlds with r ~ U(0, 1)^{S×K}, each repeated for ``seeds`` replicas."""
        means = uniform((instances, n_states, n_actions), generator, dtype, device)
        return cls(repeat_instances(means, seeds), reward_noise)

    def exact(self, logits: torch.Tensor, tau: float = 0.0) -> Exact:
        """Exact Q = r, V = E_π r (+ τH for the soft values), A = Q − V, w(s) = ρ(s) = 1/S.

        Args:
          logits: ``[B, S, K]``; tau: entropy temperature of the soft values.
        """
        check_logits_shape(logits, (self.batch, self.n_states, self.n_actions))
        ell = log_policy(logits)
        pi = ell.exp()
        q = self.means.to(logits.dtype)
        v = (pi * (q - tau * ell)).sum(-1)
        rho = torch.full_like(v, 1.0 / self.n_states)
        reward = (rho * (pi * q).sum(-1)).sum(-1)
        return Exact(
            q=q, v=v, adv=q - v.unsqueeze(-1), pg_weight=rho, npg_scale=1.0, agg_weight=rho, reward=reward
        )

    def optimal_reward(self) -> torch.Tensor:
        """``[B]`` J(π*) = Σ_s ρ(s) max_a r(s, a)."""
        return self.means.amax(-1).mean(-1)

    def sample(
        self, logits: torch.Tensor, samples: int, generator: torch.Generator, groups: int = 1
    ) -> TokenBatch:
        """``samples`` actions at every state (one group per state, T = 1), rewards ~ Bernoulli(r) or r.

        coef = ρ(s)/samples, so Σ_i coef_i (R_i − V(s_i)) (e_{a_i} − π) is unbiased for ∂J/∂z.
        """
        ex = self.exact(logits)
        actions = sample_categorical(logits, samples, generator)  # [B, S, N]
        r = self.means.to(logits.dtype).gather(-1, actions)  # [B, S, N]
        if self.reward_noise == "bernoulli":
            r = (uniform(r.shape, generator, r.dtype, r.device) < r).to(r.dtype)
        coef = (ex.pg_weight / samples).unsqueeze(-1).expand_as(r)
        return state_major_batch(actions, r, ex.v.unsqueeze(-1).expand_as(r), coef)
