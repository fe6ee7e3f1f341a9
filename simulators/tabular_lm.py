"""A per-prefix "tabular language model": one free logit vector over a vocabulary of V tokens for every
prefix of length 0..L−1, a terminal 0/1 reward, responses sampled in GRPO groups (docs/theory.md §3.7).

Prefixes are indexed level by level: the prefix (y_1, ..., y_k) has index
``offset_k + Σ_j y_j V^(k−j)`` with ``offset_k = (V^k − 1)/(V − 1)``, so there are
S = (V^L − 1)/(V − 1) states and the children of a prefix at level k are contiguous at level k+1.

The reward of a response y is 1 iff at least ``threshold`` positions equal the instance's target
sequence. The LM is a deterministic tree MDP with γ = 1, evaluated exactly by backward recursion:

    Q(s, y) = V(s·y) (or R(s·y) at the last level),   V(s) = Σ_y π(y|s) (Q(s, y) − τ log π(y|s)),
    ∂J/∂z_s = P(reach s) · π_s ⊙ (Q(s, ·) − V(s))                    (the PG step, docs/theory.md §1.6).
"""

from __future__ import annotations

import torch

from theory import log_policy

from .world_base import Exact, TokenBatch, check_logits_shape, repeat_instances, sample_categorical, uniform


class TabularLM:
    """B tabular LMs with vocabulary ``vocab`` = V, horizon ``horizon`` = L and targets ``[B, L]``."""

    def __init__(self, targets: torch.Tensor, vocab: int, threshold: int, dtype=torch.float64):
        if targets.dim() != 2:
            raise ValueError(f"targets must be [B, L], got shape {tuple(targets.shape)}")
        if vocab < 2:
            raise ValueError(f"vocab must be >= 2, got {vocab}")
        if ((targets < 0) | (targets >= vocab)).any():
            raise ValueError(f"targets must lie in [0, {vocab})")
        self.batch, self.horizon = targets.shape
        if not 1 <= threshold <= self.horizon:
            raise ValueError(f"threshold must lie in [1, {self.horizon}], got {threshold}")
        self.vocab, self.threshold, self.targets = vocab, threshold, targets
        self.n_actions = vocab
        self.offsets = [(vocab**k - 1) // (vocab - 1) for k in range(self.horizon + 1)]
        self.n_states = self.offsets[self.horizon]
        self.leaf_tokens = self.sequences(vocab, self.horizon, targets.device)  # [V^L, L]
        matches = (self.leaf_tokens.unsqueeze(0) == targets.unsqueeze(1)).sum(-1)  # [B, V^L]
        self.leaf_reward = (matches >= threshold).to(dtype)

    @staticmethod
    def sequences(vocab: int, horizon: int, device="cpu") -> torch.Tensor:
        """All V^L responses in leaf-index order: row i holds the base-V digits of i, ``[V^L, L]`` long."""
        idx = torch.arange(vocab**horizon, device=device)
        powers = vocab ** torch.arange(horizon - 1, -1, -1, device=device)
        return (idx.unsqueeze(-1) // powers) % vocab

    @classmethod
    def random(
        cls,
        instances: int,
        seeds: int,
        vocab: int,
        horizon: int,
        threshold: int,
        generator: torch.Generator,
        dtype=torch.float64,
        device="cpu",
    ) -> "TabularLM":
        """Targets drawn uniformly from V^L, each instance repeated for ``seeds`` replicas."""
        u = uniform((instances, horizon), generator, torch.float64, device)
        targets = (u * vocab).long().clamp_max(vocab - 1)
        return cls(repeat_instances(targets, seeds), vocab, threshold, dtype)

    def prefix_index(self, prefix: torch.Tensor) -> torch.Tensor:
        """Index of prefixes ``[..., k]`` (k < L tokens): offset_k + Σ_j y_j V^(k−j)."""
        k = prefix.shape[-1]
        if k >= self.horizon:
            raise ValueError(f"a prefix has at most L-1 = {self.horizon - 1} tokens, got {k}")
        powers = self.vocab ** torch.arange(k - 1, -1, -1, device=prefix.device)
        return self.offsets[k] + (prefix * powers).sum(-1)

    def _level(self, k: int) -> slice:
        return slice(self.offsets[k], self.offsets[k + 1])

    def exact(self, logits: torch.Tensor, tau: float = 0.0) -> Exact:
        """Exact Q, V (soft for τ > 0), reach probabilities P(s) = pg_weight, aggregate weights P(s)/L,
        and the success probability J = Σ_leaves P(y) R(y) as ``reward``.

        Args:
          logits: ``[B, S, V]``; tau: entropy temperature τ ≥ 0.
        """
        check_logits_shape(logits, (self.batch, self.n_states, self.vocab))
        b, v_sz = self.batch, self.vocab
        ell = log_policy(logits)
        pi = ell.exp()
        value = self.leaf_reward.to(logits.dtype)  # [B, V^(k+1)]
        qs, vs = [None] * self.horizon, [None] * self.horizon
        for k in range(self.horizon - 1, -1, -1):  # backward
            sl = self._level(k)
            qs[k] = value.view(b, v_sz**k, v_sz)  # [B, V^k, V]
            vs[k] = (pi[:, sl] * (qs[k] - tau * ell[:, sl])).sum(-1)  # [B, V^k]
            value = vs[k]
        reach = [torch.ones(b, 1, dtype=logits.dtype, device=logits.device)]
        for k in range(self.horizon):  # forward
            reach.append((reach[k].unsqueeze(-1) * pi[:, self._level(k)]).reshape(b, v_sz ** (k + 1)))
        q, v = torch.cat(qs, dim=1), torch.cat(vs, dim=1)
        d = torch.cat(reach[:-1], dim=1)  # [B, S]
        reward = (reach[-1] * self.leaf_reward.to(logits.dtype)).sum(-1)
        return Exact(
            q=q,
            v=v,
            adv=q - v.unsqueeze(-1),
            pg_weight=d,
            npg_scale=1.0,
            agg_weight=d / self.horizon,
            reward=reward,
        )

    def optimal_reward(self) -> torch.Tensor:
        """``[B]`` ones: the target itself always earns reward 1."""
        return torch.ones(self.batch, dtype=self.leaf_reward.dtype, device=self.leaf_reward.device)

    def sample(
        self, logits: torch.Tensor, samples: int, generator: torch.Generator, groups: int = 1
    ) -> TokenBatch:
        """``groups`` groups of ``samples`` responses from the root, token by token.

        coef = 1/M (M = groups·samples) and baseline = V(root): Σ_i coef (R_i − V(root)) Σ_t ∇ log π(y_t|s_t)
        is unbiased for ∂J/∂z.
        """
        check_logits_shape(logits, (self.batch, self.n_states, self.vocab))
        b, m = self.batch, groups * samples
        local = torch.zeros(b, m, dtype=torch.long, device=logits.device)  # index within level
        states, actions = [], []
        for k in range(self.horizon):
            state = self.offsets[k] + local  # [B, M]
            z = logits.gather(1, state.unsqueeze(-1).expand(b, m, self.vocab))  # [B, M, V]
            y = sample_categorical(z, 1, generator).squeeze(-1)  # [B, M]
            states.append(state)
            actions.append(y)
            local = local * self.vocab + y
        rewards = self.leaf_reward.to(logits.dtype).gather(1, local)  # [B, M]
        root_v = self.exact(logits).v[:, :1].expand(b, m)
        return TokenBatch(
            state_ids=torch.stack(states, -1),
            actions=torch.stack(actions, -1),
            mask=torch.ones(b, m, self.horizon, dtype=torch.bool, device=logits.device),
            rewards=rewards,
            baseline=root_v,
            coef=torch.full_like(rewards, 1.0 / m),
            group_size=samples,
            state_major=False,
        )
