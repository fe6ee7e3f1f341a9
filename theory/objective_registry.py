"""The registry of the token-level objectives of :mod:`theory.objectives`: the names of the metrics they emit
(with what each one is), :data:`OBJECTIVES` (name → :class:`ObjectiveSpec`), :func:`register_objective` and
the one check of their hyperparameters, :func:`validate_objective_params` (unknown names, value ranges and
the percent-vs-fraction guard on token ratios). Everything here is re-exported by :mod:`theory.objectives`,
which registers the built-in objectives.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Callable, Mapping

import torch

from ._checks import Hyperparameter
from .cov_selection import Selection
from .names import MAX_UNGUARDED_RATIO, ObjectiveName

# Metric names: every key an objective or additive term can emit (fractions are over the call's tokens).
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
METRIC_ABS_LOG_RATIO = "objective/abs_log_ratio"
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
    METRIC_ABS_LOG_RATIO: "KL-Cov: mean over all tokens of |log ρ| (what the penalty scales; verl's "
                          "kl_cov actor/ppo_kl)",
    METRIC_ENTROPY: "mean per-token entropy H(π_θ(·|y_<t)) passed to entropy_bonus",
    METRIC_REF_KL_K1: "k1 estimate of KL(π_θ ‖ π_ref): mean of log π_θ − log π_ref",
    METRIC_REF_KL_K2: "k2 estimate of KL(π_θ ‖ π_ref): mean of ½(log π_θ − log π_ref)²",
    METRIC_REF_KL_K3: "k3 estimate of KL(π_θ ‖ π_ref): mean of r − 1 − log r, r = π_ref/π_θ",
}
_COMMON = (METRIC_NUM_TOKENS, METRIC_COV_MEAN, METRIC_APPROX_KL, METRIC_PPO_KL)
_CLIP = (METRIC_CLIP_FRAC_LOW, METRIC_CLIP_FRAC_HIGH, METRIC_CLIP_FRAC)
_SELECTION = (METRIC_SELECTED_COUNT, METRIC_SELECTED_FRAC, METRIC_COV_SELECTED_MEAN)

# -- registry and the one validation of hyperparameters ----------------------------------------------


#: the common signature above: fn(log_prob, old_log_prob, advantages, mask, *, **hyperparameters,
#: generator=None, stats=None) -> (loss_matrix, metrics)
ObjectiveFn = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
#: a selection hook: (hyperparameters, lp, old, adv, mask, generator) -> Selection (prepared inputs)
SelectHook = Callable[..., Selection]


_FRACTION = Hyperparameter(kind="real", low=0.0, high=1.0, fraction=True)
#: valid values of the built-in hyperparameters, by name (a name means the same thing in every objective)
_RANGES: dict[str, Hyperparameter] = {
    "eps_low": Hyperparameter(kind="real", low=0.0, high=1.0),  # the lower clip bound 1 − ε_low is >= 0
    "eps_high": Hyperparameter(kind="real", low=0.0),
    "clip_ratio": _FRACTION,
    "kl_ratio": _FRACTION,
    "cov_lb": Hyperparameter(kind="real", finite=False),
    "cov_ub": Hyperparameter(kind="real", finite=False),
    "kl_coef": Hyperparameter(kind="real", low=0.0),
    "allow_large_ratio": Hyperparameter(kind="bool"),
}


#: results of :func:`_check_values` for plain bool/int/float values, keyed by the specs' identity and the
#: (name, type, value, sign) of each value: objectives are called with the same hyperparameters every step
_CHECKED: dict = {}
_PLAIN = (bool, int, float)


def _check_values(specs: Mapping[str, Hyperparameter], values: dict) -> dict:
    """Each value against its range, then the joint rules: cov_lb < cov_ub and the percent guard
    (validated once per distinct set of plain values; a copy of the cached result is returned)."""
    key = None
    if all(type(v) in _PLAIN for v in values.values()):
        key = (id(specs), tuple((k, type(v), v, math.copysign(1.0, v)) for k, v in values.items()))
        hit = _CHECKED.get(key)
        if hit is not None and hit[0] is specs:
            return dict(hit[1])
    out = _check_values_uncached(specs, values)
    if key is not None and len(_CHECKED) < 1024:
        _CHECKED[key] = (specs, dict(out))
    return out


def _check_values_uncached(specs: Mapping[str, Hyperparameter], values: dict) -> dict:
    out = {k: (specs[k].check(k, v) if k in specs else v) for k, v in values.items()}
    if "cov_lb" in out and "cov_ub" in out and not out["cov_lb"] < out["cov_ub"]:
        raise ValueError(f"cov_lb={out['cov_lb']:g} must be < cov_ub={out['cov_ub']:g}"
                         " (the candidate interval is (cov_lb, cov_ub))")
    for k, v in out.items():
        if k in specs and specs[k].fraction and v > MAX_UNGUARDED_RATIO and not out.get("allow_large_ratio"):
            raise ValueError(
                f"{k}={v:g} selects {100 * v:g}% of all tokens; its valid range is [0, {MAX_UNGUARDED_RATIO}]"
                f" ([0, 1] with allow_large_ratio=True): {k} is a *fraction* (the paper uses 2e-4 = 0.02%,"
                " 2e-3 = 0.2%), not a percent as the official repo's k_percent. Pass allow_large_ratio=True"
                f" if {v:g} is intended.")
    return out


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registry entry: the objective, its hyperparameters (defaults, valid values), the metrics it
    emits (name → description) and its selection hook (None: it selects no tokens); ``open``: it takes
    ``**kwargs`` (unknown names pass unchecked)."""

    name: str
    fn: ObjectiveFn
    params: Mapping[str, Hyperparameter]
    metrics: Mapping[str, str] = field(default_factory=dict)
    select: SelectHook | None = None
    open: bool = False

    def validate(self, params: Mapping) -> dict:
        """All hyperparameters (defaults filled in) after checking the names and values of ``params``."""
        if not isinstance(params, Mapping):
            raise ValueError(f"hyperparameters of {self.name!r} must be a dict, got {type(params).__name__}")
        unknown = sorted(set(params) - set(self.params))
        if unknown and not self.open:
            accepted = ", ".join(self.params) or "none"
            raise ValueError(f"objective {self.name!r} takes no hyperparameter(s) {unknown}; it takes no"
                             f" parameter(s) other than the ones it accepts: {accepted}")
        given = {n: p.default for n, p in self.params.items() if p.default is not inspect.Parameter.empty}
        return _check_values(self.params, {**given, **params})


OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register_objective(name: str, fn: ObjectiveFn | None = None, *, overwrite: bool = False,
                       metrics: tuple[str, ...] = (), select: SelectHook | None = None):
    """Register ``fn`` under ``name`` (usable as ``@register_objective("name")``; ValueError if taken
    and not ``overwrite``). Its hyperparameters are its keyword-only arguments but ``generator``/``stats``,
    with their defaults; built-in names (eps_low, clip_ratio, ...) get their valid ranges. ``metrics``:
    the METRIC_* keys it emits; ``select``: its token-selection hook (for :func:`compute_cov_stats`)."""
    key = name.value if isinstance(name, Enum) else str(name)

    def deco(f: ObjectiveFn) -> ObjectiveFn:
        if key in OBJECTIVES and not overwrite:
            raise ValueError(f"objective {key!r} is already registered (pass overwrite=True to replace it)")
        sig = inspect.signature(f).parameters.values()
        params = {p.name: replace(_RANGES.get(p.name, Hyperparameter()), default=p.default) for p in sig
                  if p.kind is p.KEYWORD_ONLY and p.name not in ("generator", "stats")}
        described = MappingProxyType({m: METRIC_DESCRIPTIONS.get(m, "") for m in metrics})
        OBJECTIVES[key] = ObjectiveSpec(key, f, MappingProxyType(params), described, select,
                                        any(p.kind is p.VAR_KEYWORD for p in sig))
        return f

    return deco if fn is None else deco(fn)


def objective_spec(name: str | ObjectiveName) -> ObjectiveSpec:
    """The registry entry called ``name`` (ValueError listing the registered names if unknown)."""
    key = name.value if isinstance(name, Enum) else name
    try:
        return OBJECTIVES[key]
    except (KeyError, TypeError):
        known = ", ".join(sorted(OBJECTIVES))
        raise ValueError(f"unknown objective {name!r}; known objectives: {known}") from None


def get_objective(name: str | ObjectiveName) -> ObjectiveFn:
    """The registered objective function called ``name`` (ValueError listing the names if unknown)."""
    return objective_spec(name).fn


def validate_objective_params(name: str | ObjectiveName, params: Mapping) -> dict:
    """THE check of an objective's hyperparameters (the objectives', the simulators' and the LLM
    trainer's configs use it): unknown names, values outside their range (e.g. eps_low > 1, kl_coef < 0,
    cov_lb >= cov_ub) and percent-looking token fractions (clip_ratio/kl_ratio > 0.05 without
    ``allow_large_ratio``) raise ``ValueError`` naming the value and its valid range. Returns every
    hyperparameter of the objective (defaults filled in), checked and converted."""
    return objective_spec(name).validate(params)


__all__ = [
    "METRIC_ABS_LOG_RATIO", "METRIC_APPROX_KL", "METRIC_CANDIDATE_FRAC", "METRIC_CLIP_FRAC",
    "METRIC_CLIP_FRAC_HIGH", "METRIC_CLIP_FRAC_LOW", "METRIC_COV_MEAN", "METRIC_COV_SELECTED_MEAN",
    "METRIC_DESCRIPTIONS", "METRIC_ENTROPY", "METRIC_KL_PENALTY", "METRIC_NUM_TOKENS", "METRIC_PPO_KL",
    "METRIC_REF_KL_K1", "METRIC_REF_KL_K2", "METRIC_REF_KL_K3", "METRIC_SELECTED_COUNT",
    "METRIC_SELECTED_FRAC", "OBJECTIVES", "ObjectiveFn", "ObjectiveSpec", "SelectHook", "get_objective",
    "objective_spec", "register_objective", "validate_objective_params",
]
