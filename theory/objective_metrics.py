"""Names, descriptions and helpers of the metrics the token-level objectives emit (paper §4.2).

This is the single place where the ``objective/*`` metric names of :mod:`theory.objectives` and
:mod:`theory.regularizers` are defined (``METRIC_DESCRIPTIONS`` documents each one), together with the
numerical constants the objectives share (the log-ratio clamp, the ratio guard, the KL estimators) and
the private helpers that compute the metric dicts. Every metric value is a 0-dim detached tensor;
nothing here synchronises with the host.
"""

from __future__ import annotations

import torch

# ----------------------------------------------------------------------------------------------------
# constants
# ----------------------------------------------------------------------------------------------------

#: |log ρ| is clamped to this before ``exp`` (verl ``vanilla``); also used by the k3 estimators.
LOG_RATIO_CLAMP = 20.0
#: token fractions above this raise unless ``allow_large_ratio=True`` (percent-vs-fraction guard).
MAX_UNGUARDED_RATIO = 0.05
#: the per-token estimators of KL(π_θ ‖ π_ref) that :func:`theory.regularizers.reference_kl` knows.
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")

# Metric names: every key an objective or additive term can emit. All values are 0-dim detached
# tensors; fractions are over the unmasked tokens of the call.
METRIC_NUM_TOKENS = "objective/num_tokens"
METRIC_CLIP_FRAC_LOW = "objective/clip_frac_low"
METRIC_CLIP_FRAC_HIGH = "objective/clip_frac_high"
METRIC_CLIP_FRAC = "objective/clip_frac"
METRIC_CANDIDATE_FRAC = "objective/candidate_frac"
METRIC_SELECTED_FRAC = "objective/selected_frac"
METRIC_SELECTED_COUNT = "objective/selected_count"
METRIC_COV_MEAN = "objective/cov_mean"
METRIC_COV_SELECTED_MEAN = "objective/cov_selected_mean"
METRIC_APPROX_KL = "objective/approx_kl"
METRIC_PPO_KL = "objective/ppo_kl"
METRIC_KL_PENALTY = "objective/kl_penalty"
METRIC_ENTROPY = "objective/entropy"
METRIC_REF_KL_K1 = "objective/ref_kl_k1"
METRIC_REF_KL_K2 = "objective/ref_kl_k2"
METRIC_REF_KL_K3 = "objective/ref_kl_k3"

#: What each metric is (and which estimator), for README tables and log viewers.
METRIC_DESCRIPTIONS: dict[str, str] = {
    METRIC_NUM_TOKENS: "unmasked tokens in this call (weight for averaging metrics over micro-batches)",
    METRIC_CLIP_FRAC_LOW: "fraction of tokens with the PPO clip active below (A < 0, ρ < 1 − eps_low)",
    METRIC_CLIP_FRAC_HIGH: "fraction of tokens with the PPO clip active above (A > 0, ρ > 1 + eps_high)",
    METRIC_CLIP_FRAC: "fraction of tokens whose PPO clip is active (low + high)",
    METRIC_CANDIDATE_FRAC: "Clip-Cov: fraction of candidates (not PPO-clipped, cov_lb < cov < cov_ub)",
    METRIC_SELECTED_FRAC: "fraction touched by the cov rule (Clip-Cov: loss zeroed; KL-Cov: penalised)",
    METRIC_SELECTED_COUNT: "number of tokens touched by the covariance rule",
    METRIC_COV_MEAN: "mean over tokens of the Eq. 10 centred product (A − Ā)(log π − mean log π)",
    METRIC_COV_SELECTED_MEAN: "mean Eq. 10 centred product over the selected tokens (0 if none)",
    METRIC_APPROX_KL: "k3 estimate of KL(π_old ‖ π_θ) from tokens sampled by π_old: mean of (ρ − 1) − log ρ",
    METRIC_PPO_KL: "k1 estimate of KL(π_old ‖ π_θ): mean of log π_old − log π_θ (verl actor/ppo_kl)",
    METRIC_KL_PENALTY: "KL-Cov: mean over all tokens of the added kl_coef·|log ρ| (0 off the selection)",
    METRIC_ENTROPY: "mean per-token entropy H(π_θ(·|y_<t)) passed to entropy_bonus",
    METRIC_REF_KL_K1: "k1 estimate of KL(π_θ ‖ π_ref): mean of log π_θ − log π_ref",
    METRIC_REF_KL_K2: "k2 estimate of KL(π_θ ‖ π_ref): mean of ½(log π_θ − log π_ref)²",
    METRIC_REF_KL_K3: "k3 estimate of KL(π_θ ‖ π_ref): mean of r − 1 − log r, r = π_ref/π_θ",
}


# ----------------------------------------------------------------------------------------------------
# metric helpers (no host synchronisation)
# ----------------------------------------------------------------------------------------------------


def _frac(count_mask: torch.Tensor, n: torch.Tensor, dtype) -> torch.Tensor:
    return count_mask.sum().to(dtype) / n.clamp_min(1).to(dtype)


def _common_metrics(ratio, lp, old, m, n, cov) -> dict[str, torch.Tensor]:
    d = n.clamp_min(1).to(lp.dtype)
    zero = torch.zeros_like(ratio)
    log_r = torch.log(ratio.detach())
    k3 = torch.where(m, ratio.detach() - 1.0 - log_r, zero).sum() / d
    k1 = torch.where(m, old - lp.detach(), zero).sum() / d
    return {
        METRIC_NUM_TOKENS: n.detach(),
        METRIC_COV_MEAN: cov.sum() / d,
        METRIC_APPROX_KL: k3,
        METRIC_PPO_KL: k1,
    }


def _clip_metrics(c_low, c_high, n, dtype):
    return {
        METRIC_CLIP_FRAC_LOW: _frac(c_low, n, dtype),
        METRIC_CLIP_FRAC_HIGH: _frac(c_high, n, dtype),
        METRIC_CLIP_FRAC: _frac(c_low | c_high, n, dtype),
    }


def _selection_metrics(selected, cov, n, dtype) -> dict[str, torch.Tensor]:
    count = selected.sum()
    return {
        METRIC_SELECTED_COUNT: count,
        METRIC_SELECTED_FRAC: count.to(dtype) / n.clamp_min(1).to(dtype),
        METRIC_COV_SELECTED_MEAN: torch.where(selected, cov, torch.zeros_like(cov)).sum()
        / count.clamp_min(1).to(dtype),
    }


__all__ = [
    "KL_ESTIMATORS",
    "LOG_RATIO_CLAMP",
    "MAX_UNGUARDED_RATIO",
    "METRIC_DESCRIPTIONS",
    *(name for name in dir() if name.startswith("METRIC_") and name != "METRIC_DESCRIPTIONS"),
]
