"""Which ``theory.objectives`` objective a run uses: trainer-level aliases and which objectives select
tokens over a whole mini-batch. Their hyperparameters are checked by
``theory.objectives.validate_objective_params`` (when ``llm_rl.config.ObjectiveConfig`` is built).

Importing this module imports no torch (``llm_rl.config`` and ``--help`` read it): the registry of
``theory.objectives`` is imported when a name is resolved, and :data:`SELECTION_OBJECTIVES` is computed on
first access (PEP 562).
"""

from __future__ import annotations

#: trainer-level aliases of theory.objectives names (the issue calls PPO-clip GRPO "grpo")
OBJECTIVE_ALIASES = {"grpo": "ppo_clip"}


def _selection_objectives() -> tuple[str, ...]:
    """The built-in objectives with a selection hook (their token selection needs the whole mini-batch)."""
    from theory.names import KNOWN_OBJECTIVES
    from theory.objectives import objective_spec

    return tuple(n for n in KNOWN_OBJECTIVES if objective_spec(n).select is not None)


def __getattr__(name: str):
    """``SELECTION_OBJECTIVES``: objectives whose token selection must be computed over the whole
    mini-batch (those with a selection hook), computed on first access."""
    if name == "SELECTION_OBJECTIVES":
        value = globals()[name] = _selection_objectives()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_objective_name(name: str) -> str:
    """Map an alias to a ``theory.objectives`` name; unknown names raise listing every valid one."""
    from theory.objectives import OBJECTIVES  # the registry (built-ins and registered objectives)

    key = OBJECTIVE_ALIASES.get(name, name)
    if key not in OBJECTIVES:
        valid = sorted(set(OBJECTIVES) | set(OBJECTIVE_ALIASES))
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(valid)}")
    return key

