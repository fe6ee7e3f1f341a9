"""Which ``theory.objectives`` objective a run uses: trainer-level aliases and which objectives select
tokens over a whole mini-batch. Their hyperparameters are checked by
``theory.objectives.validate_objective_params`` (when ``llm_rl.config.ObjectiveConfig`` is built)."""

from __future__ import annotations

from theory.objectives import KNOWN_OBJECTIVES, OBJECTIVES, objective_spec

#: trainer-level aliases of theory.objectives names (the issue calls PPO-clip GRPO "grpo")
OBJECTIVE_ALIASES = {"grpo": "ppo_clip"}
#: objectives whose token selection must be computed over the whole mini-batch (those with a selection hook)
SELECTION_OBJECTIVES = tuple(n for n in KNOWN_OBJECTIVES if objective_spec(n).select is not None)


def resolve_objective_name(name: str) -> str:
    """Map an alias to a ``theory.objectives`` name; unknown names raise listing every valid one."""
    key = OBJECTIVE_ALIASES.get(name, name)
    if key not in OBJECTIVES:
        valid = sorted(set(OBJECTIVES) | set(OBJECTIVE_ALIASES))
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(valid)}")
    return key
