"""``theory``: the mathematics of Cui et al. (2025) as pure, tested torch functions.

Every function takes ``logits`` with any leading batch dims and the actions on the last axis;
``-inf`` logits are masked actions. ``theory`` imports nothing else from this package.
"""

from .advantages import ADVANTAGE_ESTIMATORS, group_advantages, zero_variance_groups
from .aggregation import AGG_MODES, AggMode, aggregate, global_counts, masked_mean, masked_sum
from .covariance import covariance_decomposition, token_covariance
from .entropy_dynamics import (
    entropy_change,
    entropy_gradient,
    entropy_step_report,
    first_order_entropy_change,
    first_order_error_bound,
    log_prob_change_norm_sq,
    second_order_entropy_change,
)
from .kl import categorical_kl
from .law import LawFit, fit_entropy_law, law_predict
from .law_extrapolation import compare_forms, fit_size_scaling, predict_from_early
from .objectives import (
    KNOWN_OBJECTIVES,
    METRIC_DESCRIPTIONS,
    OBJECTIVES,
    CovStats,
    ObjectiveName,
    ObjectiveSpec,
    clip_cov,
    clip_higher,
    compute_cov_stats,
    get_objective,
    kl_cov,
    objective_spec,
    ppo_clip,
    register_objective,
    validate_objective_params,
    vanilla_pg,
)
from .regularizers import entropy_bonus, reference_kl
from .softmax import entropy, log_policy, policy_covariance
from .updates import (
    entropy_regularized_npg_logit_step,
    expected_sampled_entropy_change,
    npg_logit_step,
    pg_logit_step,
    predicted_entropy_change,
    sample_entropy_contribution,
    sampled_logit_step,
)

__all__ = [
    "LawFit",
    "categorical_kl",
    "compare_forms",
    "covariance_decomposition",
    "entropy",
    "entropy_change",
    "entropy_gradient",
    "entropy_step_report",
    "entropy_regularized_npg_logit_step",
    "expected_sampled_entropy_change",
    "first_order_entropy_change",
    "first_order_error_bound",
    "fit_entropy_law",
    "fit_size_scaling",
    "law_predict",
    "log_policy",
    "log_prob_change_norm_sq",
    "npg_logit_step",
    "pg_logit_step",
    "policy_covariance",
    "predict_from_early",
    "predicted_entropy_change",
    "sample_entropy_contribution",
    "sampled_logit_step",
    "second_order_entropy_change",
    "token_covariance",
    # group advantages (theory.advantages)
    "ADVANTAGE_ESTIMATORS",
    "group_advantages",
    "zero_variance_groups",
    # aggregation (theory.aggregation)
    "AGG_MODES",
    "AggMode",
    "aggregate",
    "global_counts",
    "masked_mean",
    "masked_sum",
    # token-level objectives and their registry (theory.objectives; CovStats from theory.cov_selection)
    "CovStats",
    "KNOWN_OBJECTIVES",
    "METRIC_DESCRIPTIONS",
    "OBJECTIVES",
    "ObjectiveName",
    "ObjectiveSpec",
    "clip_cov",
    "clip_higher",
    "compute_cov_stats",
    "get_objective",
    "kl_cov",
    "objective_spec",
    "ppo_clip",
    "register_objective",
    "validate_objective_params",
    "vanilla_pg",
    # additive terms (theory.regularizers)
    "entropy_bonus",
    "reference_kl",
]
