"""``simulators``: tabular softmax worlds where the paper's entropy dynamics are run step by step, every
prediction (Lemma 1, second order, Theorems 1-2, Eq. 10) recorded next to the observed entropy change.

Imports only ``theory``. Entry points: :func:`simulate` / :func:`load_run` and ``entropy-mech simulate``.

The names below are exported lazily (PEP 562, as in ``theory``): ``simulators.X`` imports the submodule
defining ``X`` on first use, so ``simulators.config`` (and ``entropy-mech simulate --help``) needs no torch.
"""

from __future__ import annotations

from theory._lazy import lazy_exports

#: exported name -> submodule defining it
_SOURCES: dict[str, str] = {
    **dict.fromkeys(("RULE_NAMES", "WORLD_NAMES", "SimConfig"), "config"),
    "TabularMDP": "mdp",
    **dict.fromkeys(("PER_STATE_KEYS", "batch_covariance", "record_step"), "recorder"),
    **dict.fromkeys(("RULES", "StepResult", "gather_log_prob", "make_rule", "reinforce_logit_step"), "rules"),
    **dict.fromkeys(("Run", "load_run", "run_to_dir", "save_run", "simulate"), "run"),
    "TabularLM": "tabular_lm",
    **dict.fromkeys(("ContextualBandit", "Exact", "TokenBatch", "make_world", "sample_categorical",
                     "state_major_batch"), "worlds"),
}


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)


__all__ = [
    "ContextualBandit",
    "Exact",
    "PER_STATE_KEYS",
    "RULES",
    "RULE_NAMES",
    "Run",
    "SimConfig",
    "StepResult",
    "TabularLM",
    "TabularMDP",
    "TokenBatch",
    "WORLD_NAMES",
    "batch_covariance",
    "gather_log_prob",
    "load_run",
    "make_rule",
    "make_world",
    "record_step",
    "reinforce_logit_step",
    "run_to_dir",
    "sample_categorical",
    "save_run",
    "simulate",
    "state_major_batch",
]
