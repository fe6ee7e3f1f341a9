"""Which ``theory.objectives`` objective a run uses: trainer-level aliases, fail-fast validation of
the objective's hyperparameters, and which objectives select tokens over a whole mini-batch."""

from __future__ import annotations

import inspect

#: trainer-level aliases of theory.objectives names (the issue calls PPO-clip GRPO "grpo")
OBJECTIVE_ALIASES = {"grpo": "ppo_clip"}
#: objectives whose token selection must be computed over the whole mini-batch
SELECTION_OBJECTIVES = ("clip_cov", "kl_cov")


def resolve_objective_name(name: str) -> str:
    """Map an alias to a ``theory.objectives`` name; unknown names raise listing every valid one."""
    from theory.objectives import OBJECTIVES

    key = OBJECTIVE_ALIASES.get(name, name)
    if key not in OBJECTIVES:
        valid = sorted(set(OBJECTIVES) | set(OBJECTIVE_ALIASES))
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(valid)}")
    return key


def check_objective_params(name: str, objective, params: dict) -> None:
    """Fail fast on hyperparameters ``objective`` does not take (the message lists the valid ones)."""
    sig = inspect.signature(objective).parameters
    accepted = {p for p, v in sig.items() if v.kind is v.KEYWORD_ONLY} - {"generator", "stats"}
    bad = sorted(set(params) - accepted)
    if bad:
        raise ValueError(f"objective {name!r} takes no parameter(s) {bad}; valid: {', '.join(sorted(accepted))}")
