"""The vocabularies of ``theory`` as plain strings: the one home of every name a config or a command-line
option validates against, importable without torch (``entropy-mech <command> --help`` stays fast).

- :data:`ADVANTAGE_ESTIMATORS`: ``grpo`` (r − mean)/(std + eps), ``drgrpo`` r − mean (theory.advantages);
- :class:`AggMode` / :data:`AGG_MODES`: verl's ``loss_agg_mode`` names (theory.aggregation);
- :class:`ObjectiveName` / :data:`KNOWN_OBJECTIVES`: the built-in surrogate objectives (theory.objectives);
- :data:`KL_ESTIMATORS`: the k1, k2, k3 estimators of KL(π_θ ‖ π_ref) (theory.regularizers);
- :data:`MAX_UNGUARDED_RATIO`: the largest token fraction accepted without ``allow_large_ratio`` (the
  percent-vs-fraction guard of theory.objectives).

The torch-backed modules import these names from here (no second copy); the registry
``theory.objectives.OBJECTIVES`` can hold more objectives than :data:`KNOWN_OBJECTIVES` (user-registered).
"""

from __future__ import annotations

from enum import Enum

#: token fractions (Clip-Cov's r, KL-Cov's k) above this raise unless ``allow_large_ratio=True``: the paper
#: uses 2e-4 / 2e-3, the official repo's ``k_percent`` is a percent
MAX_UNGUARDED_RATIO = 0.05

#: advantage estimator names (the ``estimator`` argument of ``theory.advantages.group_advantages``)
ADVANTAGE_ESTIMATORS: tuple[str, ...] = ("grpo", "drgrpo")


class AggMode(str, Enum):
    """Known aggregation modes (the string values are verl's ``loss_agg_mode`` names)."""

    TOKEN_MEAN = "token-mean"
    SEQ_MEAN_TOKEN_MEAN = "seq-mean-token-mean"
    SEQ_MEAN_TOKEN_SUM = "seq-mean-token-sum"
    SEQ_MEAN_TOKEN_SUM_NORM = "seq-mean-token-sum-norm"


#: loss aggregation mode names (``theory.aggregation.aggregate``'s ``mode``)
AGG_MODES: tuple[str, ...] = tuple(m.value for m in AggMode)


class ObjectiveName(str, Enum):
    """Built-in objectives (string values are the registry names of ``theory.objectives.OBJECTIVES``)."""

    VANILLA_PG = "vanilla_pg"
    PPO_CLIP = "ppo_clip"
    CLIP_HIGHER = "clip_higher"
    CLIP_COV = "clip_cov"
    KL_COV = "kl_cov"


#: names of the built-in objectives
KNOWN_OBJECTIVES: tuple[str, ...] = tuple(n.value for n in ObjectiveName)

#: the per-token estimators of KL(π_θ ‖ π_ref) that ``theory.regularizers.reference_kl`` knows
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")


__all__ = [
    "ADVANTAGE_ESTIMATORS", "AGG_MODES", "AggMode", "KL_ESTIMATORS", "KNOWN_OBJECTIVES", "ObjectiveName",
]
