"""Update rules on tabular softmax logits ``[B, S, n]``, behind one registry (:func:`make_rule`).

Exact-gradient rules (every logit formula comes from ``theory``; here only the per-state scaling):

* ``pg``          Δz_s = η w(s) π_s ⊙ (A_s − E_π A_s)              (Proposition 1, docs/theory.md §1.6)
* ``npg``         Δz_s = η c A_s, c = 1/(1 − γ) in an MDP, else 1     (Theorem 2, docs/theory.md §1.7)
* ``entropy_npg`` Δz_s = η c (A^τ_s − τ log π_s), soft advantages     (Cen et al. 2022, docs/theory.md §1.13)

Sampled rules:

* ``reinforce``   Δz = η Σ_i c_i (R_i − b_i) Σ_t (e_{y_it} − π_{s_it}) at the states visited, unbiased
                  for ``pg``
                  (docs/theory.md §1.8; ``theory.sampled_logit_step`` per state)
* ``grpo``        group sampling, group-relative advantages (``theory.advantages``), ``epochs`` inner
                  optimiser steps on
                  aggregate(objective(log π, log π_old, A, mask)) from ``theory.objectives`` /
                  ``theory.aggregation`` (SGD or Adam on the logits as a torch parameter)

Every rule's :meth:`step` returns a :class:`StepResult`; nothing calls ``.item()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from theory import (
    entropy_regularized_npg_logit_step,
    npg_logit_step,
    pg_logit_step,
    sampled_logit_step,
)
from theory.advantages import group_advantages

from .config import RULE_NAMES
from .world_base import Exact, TokenBatch


@dataclass
class StepResult:
    """What one update did: new logits ``[B, S, n]`` and, for sampled rules, the batch it learned from.

    token_adv / old_log_prob: ``[B, M, T]`` advantages and behaviour log-probabilities of the batch tokens.
    metrics: name → ``[B]`` tensor (objective metrics of the last inner epoch for ``grpo``).
    """

    logits: torch.Tensor
    batch: TokenBatch | None = None
    token_adv: torch.Tensor | None = None
    old_log_prob: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


def gather_log_prob(logits: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """log π(y_t | s_t) of every batch token, ``[B, M, T]`` (differentiable in ``logits`` ``[B, S, n]``)."""
    b, m, t = batch.actions.shape
    lp = torch.log_softmax(logits, dim=-1)  # [B, S, n]
    rows = lp.gather(1, batch.state_ids.reshape(b, m * t, 1).expand(b, m * t, lp.shape[-1]))  # [B, MT, n]
    return rows.gather(-1, batch.actions.reshape(b, m * t, 1)).view(b, m, t)


def reinforce_logit_step(
    logits: torch.Tensor, batch: TokenBatch, advantages: torch.Tensor, lr: float
) -> torch.Tensor:
    """Sampled REINFORCE logit step over a token batch (docs/theory.md §1.8):

        Δz_s = η Σ_i c_i A_i Σ_{t: s_it = s} (e_{y_it} − π_s),

    computed per state with ``theory.sampled_logit_step`` (η/N Σ_j A_j (e_{a_j} − π)): state-major batches
    are reshaped to ``[B, S, N]``; otherwise every token is offered to every state with advantage 0
    where it was not emitted (memory B·S·M·T).

    Args:
      logits: ``[B, S, n]``; batch: a :class:`TokenBatch`; advantages: ``[B, M]`` per response; lr: η.
    Returns:
      ``[B, S, n]`` logit increment.
    """
    if advantages.shape != batch.rewards.shape:
        raise ValueError(
            f"advantages must have shape {tuple(batch.rewards.shape)}, got {tuple(advantages.shape)}"
        )
    b, s, _ = logits.shape
    _, m, t = batch.actions.shape
    weighted = (advantages * batch.coef).to(logits.dtype)  # [B, M]
    if batch.state_major:
        n = batch.group_size
        return sampled_logit_step(logits, batch.actions.view(b, s, n), (weighted * n).view(b, s, n), lr)
    tok_adv = (weighted.unsqueeze(-1) * batch.mask).reshape(b, 1, m * t)  # [B, 1, MT]
    here = batch.state_ids.reshape(b, 1, m * t) == torch.arange(s, device=logits.device).view(1, s, 1)
    adv = torch.where(here, tok_adv, torch.zeros_like(tok_adv)) * (m * t)  # [B, S, MT]
    actions = batch.actions.reshape(b, 1, m * t).expand(b, s, m * t)
    return sampled_logit_step(logits, actions, adv, lr)


# ----------------------------------------------------------------------------------------------------
# rules
# ----------------------------------------------------------------------------------------------------


class _Rule:
    sampled = False

    def __init__(self, config, world, logits0: torch.Tensor, generator: torch.Generator):
        self.config, self.world, self.generator = config, world, generator
        self.lr = float(config.lr)

    def step(self, logits: torch.Tensor, ex: Exact) -> StepResult:  # pragma: no cover - interface
        raise NotImplementedError


class ExactPG(_Rule):
    """Exact PG: ``pg_logit_step(z, w(s)·A, η)`` — linear in A, so the per-state weight scales the step."""

    def step(self, logits, ex):
        return StepResult(logits + pg_logit_step(logits, ex.adv * ex.pg_weight.unsqueeze(-1), self.lr))


class ExactNPG(_Rule):
    """Exact NPG: ``npg_logit_step(z, A, η·c)``."""

    def step(self, logits, ex):
        return StepResult(logits + npg_logit_step(logits, ex.adv, self.lr * ex.npg_scale))


class EntropyNPG(_Rule):
    """Entropy-regularised NPG with the world's soft advantages A^τ (Cen et al. 2022)."""

    def step(self, logits, ex):
        tau = float(self.config.tau)
        soft = self.world.exact(logits, tau=tau)
        return StepResult(
            logits + entropy_regularized_npg_logit_step(logits, soft.adv, self.lr * soft.npg_scale, tau)
        )


class Reinforce(_Rule):
    """Sampled REINFORCE with the exact value of the start state as baseline (unbiased for ``pg``)."""

    sampled = True

    def step(self, logits, ex):
        batch = self.world.sample(logits, self.config.samples, self.generator, self.config.groups)
        adv = batch.rewards - batch.baseline
        with torch.no_grad():
            old = gather_log_prob(logits, batch)
        delta = reinforce_logit_step(logits, batch, adv, self.lr)
        tok_adv = adv.unsqueeze(-1).expand(batch.mask.shape).to(logits.dtype)
        return StepResult(logits + delta, batch=batch, token_adv=tok_adv, old_log_prob=old)


class GRPO(_Rule):
    """GRPO-style training through a ``theory.objectives`` objective with SGD/Adam and inner epochs.

    Each step: sample (``samples`` per group), group-relative advantages, then ``epochs`` times
    loss = Σ_b aggregate(objective(log π_b, log π_old_b, A_b, mask_b)) and one optimiser step. Objectives
    are called once per run ``b`` so their batch statistics (Clip-Cov / KL-Cov means and quotas) never
    pool independent runs; Adam and SGD act elementwise, so summing the runs' losses keeps them independent.
    """

    sampled = True

    def __init__(self, config, world, logits0, generator):
        super().__init__(config, world, logits0, generator)
        try:
            from theory.aggregation import AGG_MODES, aggregate
            from theory.objectives import get_objective, validate_objective_params
        except ImportError as err:  # pragma: no cover - depends on the objectives module being present
            raise ValueError(f"rule 'grpo' needs theory.objectives and theory.aggregation ({err})") from None
        self.objective, self.aggregate = get_objective(config.objective), aggregate
        if config.loss_agg not in AGG_MODES:
            raise ValueError(f"unknown loss_agg {config.loss_agg!r}; choose one of: {', '.join(AGG_MODES)}")
        validate_objective_params(config.objective, config.objective_kwargs)  # also done by SimConfig
        self.param = torch.nn.Parameter(logits0.detach().clone())
        opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[config.optimizer]
        self.optimizer = opt_cls([self.param], lr=self.lr)
        # the objectives draw (Clip-Cov's random subset) on the tensors' device
        self.obj_generator = torch.Generator(device=logits0.device).manual_seed(config.seed + 1)

    def step(self, logits, ex):
        cfg = self.config
        batch = self.world.sample(logits, cfg.samples, self.generator, cfg.groups)
        adv = group_advantages(batch.rewards, batch.group_size, cfg.advantage)  # [B, M]
        tok_adv = adv.unsqueeze(-1).expand(batch.mask.shape).to(logits.dtype)  # [B, M, T]
        with torch.no_grad():
            self.param.copy_(logits)
            old = gather_log_prob(logits, batch)
        per_run = []
        for _ in range(cfg.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            lp = gather_log_prob(self.param, batch)
            total, per_run = 0.0, []
            for b in range(lp.shape[0]):
                loss_mat, metrics = self.objective(
                    lp[b],
                    old[b],
                    tok_adv[b],
                    batch.mask[b],
                    generator=self.obj_generator,
                    **cfg.objective_kwargs,
                )
                total = total + self.aggregate(loss_mat, batch.mask[b], cfg.loss_agg)
                per_run.append(metrics)
            total.backward()
            self.optimizer.step()
        return StepResult(
            self.param.detach().clone(),
            batch=batch,
            token_adv=tok_adv,
            old_log_prob=old,
            metrics=_stack_metrics(per_run, logits),
        )


def _stack_metrics(per_run: list[dict], like: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scalar metrics of each run → name: ``[B]`` tensor (non-scalar metrics are dropped)."""
    out = {}
    for key in per_run[0] if per_run else ():
        vals = [m.get(key) for m in per_run]
        if all(isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1) for v in vals):
            out[key] = torch.stack(
                [torch.as_tensor(v, dtype=like.dtype, device=like.device).reshape(()) for v in vals]
            ).detach()
    return out


RULES: dict[str, type[_Rule]] = {
    "pg": ExactPG,
    "npg": ExactNPG,
    "entropy_npg": EntropyNPG,
    "reinforce": Reinforce,
    "grpo": GRPO,
}
assert tuple(RULES) == RULE_NAMES


def make_rule(config, world, logits0: torch.Tensor, generator: torch.Generator) -> _Rule:
    """Instantiate the rule named by ``config.rule``.

    Raises:
      ValueError: unknown rule (the message lists the known ones), or a bad objective setting for ``grpo``.
    """
    if config.rule not in RULES:
        raise ValueError(f"unknown rule {config.rule!r}; choose one of: {', '.join(RULES)}")
    return RULES[config.rule](config, world, logits0, generator)
