"""``simulators``: tabular softmax worlds where the paper's entropy dynamics are run step by step, every
prediction (Lemma 1, second order, Theorems 1-2, Eq. 10) recorded next to the observed entropy change.

Imports only ``theory``. Entry points: :func:`simulate` / :func:`load_run` and ``entropy-mech simulate``.
"""

from .config import RULE_NAMES, WORLD_NAMES, SimConfig
from .mdp import TabularMDP
from .recorder import PER_STATE_KEYS, batch_covariance, record_step
from .rules import RULES, StepResult, gather_log_prob, make_rule, reinforce_logit_step
from .run import Run, load_run, run_to_dir, save_run, simulate
from .tabular_lm import TabularLM
from .worlds import ContextualBandit, Exact, TokenBatch, make_world, sample_categorical, state_major_batch

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
