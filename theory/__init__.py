"""``theory``: the mathematics of Cui et al. (2025) as pure, tested torch functions.

Every function takes ``logits`` with any leading batch dims and the actions on the last axis;
``-inf`` logits are masked actions. ``theory`` imports nothing else from this package.

The names below are exported lazily (PEP 562): ``import theory`` costs nothing, and ``theory.X`` or
``from theory import X`` imports the submodule defining ``X`` (and torch) on first use, so configs and
``entropy-mech <command> --help`` never import torch. The torch-free vocabularies live in
:mod:`theory.names`.
"""

from __future__ import annotations

from ._lazy import lazy_exports

#: exported name -> submodule defining it
_SOURCES: dict[str, str] = {
    **dict.fromkeys(("ADVANTAGE_ESTIMATORS", "AGG_MODES", "AggMode", "KNOWN_OBJECTIVES", "ObjectiveName"),
                    "names"),
    **dict.fromkeys(("group_advantages", "zero_variance_groups"), "advantages"),
    **dict.fromkeys(("aggregate", "global_counts", "masked_mean", "masked_sum"), "aggregation"),
    **dict.fromkeys(("covariance_decomposition", "response_covariance", "token_covariance"),
                    "covariance"),
    **dict.fromkeys(("entropy_change", "entropy_gradient", "entropy_step_report",
                     "first_order_entropy_change", "first_order_error_bound", "log_prob_change_norm_sq",
                     "second_order_entropy_change"), "entropy_dynamics"),
    "categorical_kl": "kl",
    **dict.fromkeys(("LawFit", "fit_entropy_law", "law_predict"), "law"),
    **dict.fromkeys(("compare_forms", "fit_size_scaling", "predict_from_early"), "law_extrapolation"),
    **dict.fromkeys(("METRIC_DESCRIPTIONS", "OBJECTIVES", "CovStats", "ObjectiveSpec", "clip_cov",
                     "clip_higher", "compute_cov_stats", "get_objective", "kl_cov", "objective_spec",
                     "ppo_clip", "register_objective", "validate_objective_params", "vanilla_pg"),
                    "objectives"),
    **dict.fromkeys(("entropy_bonus", "reference_kl"), "regularizers"),
    **dict.fromkeys(("entropy", "log_policy", "policy_covariance"), "softmax"),
    **dict.fromkeys(("entropy_regularized_npg_logit_step", "expected_sampled_entropy_change",
                     "npg_logit_step", "pg_logit_step", "predicted_entropy_change",
                     "sample_entropy_contribution", "sampled_logit_step"), "updates"),
}


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)


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
    "response_covariance",
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
