"""The registry of tabular worlds a softmax policy acts in: :func:`make_world` builds one from a config.

The worlds: :class:`~simulators.bandit.ContextualBandit` (``bandit``, ``contextual_bandit``),
:class:`~simulators.mdp.TabularMDP` (``mdp``), :class:`~simulators.tabular_lm.TabularLM` (``tabular_lm``);
what each hands the update rules (:class:`Exact`, :class:`TokenBatch`) is in :mod:`simulators.world_base`.
"""

from __future__ import annotations

import torch

from .bandit import ContextualBandit
from .config import WORLD_NAMES
from .mdp import TabularMDP
from .tabular_lm import TabularLM
from .world_base import Exact, TokenBatch, sample_categorical, state_major_batch

__all__ = ["ContextualBandit", "Exact", "TabularLM", "TabularMDP", "TokenBatch", "make_world",
           "sample_categorical",
           "state_major_batch"]


def make_world(config, generator: torch.Generator):
    """Build the world named by ``config.world`` (a :class:`simulators.config.SimConfig`).

    Raises:
      ValueError: unknown world name (the message lists the known ones).
    """
    dtype = getattr(torch, config.dtype)
    kw = dict(generator=generator, dtype=dtype, device=config.device)
    if config.world == "bandit":
        return ContextualBandit.random(
            config.instances, config.seeds, 1, config.n_actions, reward_noise=config.reward_noise, **kw
        )
    if config.world == "contextual_bandit":
        return ContextualBandit.random(
            config.instances,
            config.seeds,
            config.n_states,
            config.n_actions,
            reward_noise=config.reward_noise,
            **kw,
        )
    if config.world == "mdp":
        return TabularMDP.random(
            config.instances, config.seeds, config.n_states, config.n_actions, config.gamma, **kw
        )
    if config.world == "tabular_lm":
        return TabularLM.random(
            config.instances, config.seeds, config.vocab, config.horizon, config.match_threshold, **kw
        )
    raise ValueError(f"unknown world {config.world!r}; choose one of: {', '.join(WORLD_NAMES)}")
