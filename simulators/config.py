"""``SimConfig``: every knob of a simulator run, documented in place and validated on construction.

One run = one world (with ``instances`` random instances) x ``seeds`` independent replicas, all
advanced together along a leading batch axis of size ``B = instances * seeds``. Fields that do not
apply to the chosen world or rule are ignored (and still recorded in the resolved config).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from theory.names import ADVANTAGE_ESTIMATORS  # torch-free: `entropy-mech simulate --help` needs no torch

WORLD_NAMES: tuple[str, ...] = ("bandit", "contextual_bandit", "mdp", "tabular_lm")
RULE_NAMES: tuple[str, ...] = ("pg", "npg", "entropy_npg", "reinforce", "grpo")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
INITS: tuple[str, ...] = ("uniform", "random")
REWARD_NOISES: tuple[str, ...] = ("bernoulli", "none")
DTYPES: tuple[str, ...] = ("float64", "float32")


def _choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


@dataclass
class SimConfig:
    """Resolved configuration of one simulator run (saved as ``config.json`` next to the results)."""

    # --- what is simulated -------------------------------------------------------------------------
    world: str = "bandit"
    """World: ``bandit`` (K arms), ``contextual_bandit`` (S states), ``mdp`` (discounted tabular MDP),
    ``tabular_lm`` (one logit vector per prefix, vocabulary ``vocab``, horizon ``horizon``)."""
    rule: str = "pg"
    """Update rule: ``pg``, ``npg``, ``entropy_npg`` (exact gradients), ``reinforce`` (sampled),
    ``grpo`` (group sampling trained through ``objective`` with ``optimizer``)."""
    steps: int = 100
    """Number of outer update steps."""
    lr: float = 0.1
    """Step size η (the optimizer learning rate for ``grpo``)."""

    # --- batch of independent runs -----------------------------------------------------------------
    instances: int = 1
    """Number of independently drawn worlds (random rewards / transitions / targets)."""
    seeds: int = 1
    """Independent replicas per instance (own initial logits when ``init='random'``, own samples)."""
    seed: int = 0
    """Seed of the single ``torch.Generator`` that draws worlds, initial logits and every sample."""

    # --- world sizes ---------------------------------------------------------------------------------
    n_actions: int = 10
    """Actions per state (bandit, contextual bandit, MDP)."""
    n_states: int = 8
    """States (contextual bandit, MDP); a bandit has one."""
    gamma: float = 0.9
    """Discount of the MDP, in [0, 1)."""
    vocab: int = 4
    """Tabular LM vocabulary size V (>= 2); the LM has (V^L - 1)/(V - 1) prefixes."""
    horizon: int = 3
    """Tabular LM response length L (>= 1)."""
    match_threshold: int | None = None
    """Tabular LM reward: 1 iff at least this many positions equal the instance's target sequence
    (default ceil(L/2))."""
    reward_noise: str = "bernoulli"
    """Sampled bandit rewards: ``bernoulli`` (R ~ Bernoulli(r_a)) or ``none`` (R = r_a)."""

    # --- initial policy ------------------------------------------------------------------------------
    init: str = "uniform"
    """Initial logits: ``uniform`` (all zero) or ``random`` (N(0, init_scale^2) per logit)."""
    init_scale: float = 1.0
    """Standard deviation of the ``random`` initial logits."""

    # --- rule hyperparameters ------------------------------------------------------------------------
    tau: float = 0.1
    """Entropy-regularisation temperature τ of ``entropy_npg`` (Cen et al. 2022); needs lr*tau <= 1
    in the bandit form (lr*tau <= 1 - gamma in an MDP)."""
    samples: int = 8
    """Samples per state (bandit-like worlds) or sequences per group G (tabular LM), for the sampled rules."""
    groups: int = 1
    """Tabular LM: groups of ``samples`` sequences drawn per step (all from the root prompt)."""
    objective: str = "ppo_clip"
    """``grpo`` only: a ``theory.objectives`` name (ppo_clip, clip_higher, clip_cov, kl_cov)."""
    objective_kwargs: dict[str, Any] = field(default_factory=dict)
    """``grpo`` only: hyperparameters passed to the objective (its own defaults otherwise)."""
    loss_agg: str = "token-mean"
    """``grpo`` only: ``theory.aggregation`` mode, applied per instance."""
    optimizer: str = "sgd"
    """``grpo`` only: ``sgd`` or ``adam`` (torch defaults besides ``lr``)."""
    epochs: int = 4
    """``grpo`` only: inner optimisation epochs on each sampled batch (ratios leave 1 after the first)."""
    advantage: str = "grpo"
    """``grpo`` only: ``theory.advantages`` estimator: (R - mean)/(std + 1e-6) (``grpo``) or R - mean
    (``drgrpo``, Dr. GRPO). Saved configs with the former ``adv_norm`` (std/mean) still load."""

    # --- numerics and output -------------------------------------------------------------------------
    dtype: str = "float64"
    """Floating dtype of logits and every recorded quantity."""
    device: str = "cpu"
    """Torch device (``cpu``, ``cuda``, ``cuda:1``...)."""
    record_logits: bool = False
    """Also store the logits before every step and after the last (``logits``: [steps+1, B, S, n])."""

    def __post_init__(self) -> None:
        _choice(self.world, WORLD_NAMES, "world")
        _choice(self.rule, RULE_NAMES, "rule")
        _choice(self.optimizer, OPTIMIZERS, "optimizer")
        _choice(self.advantage, ADVANTAGE_ESTIMATORS, "advantage")
        _choice(self.init, INITS, "init")
        _choice(self.reward_noise, REWARD_NOISES, "reward_noise")
        _choice(self.dtype, DTYPES, "dtype")
        for name in (
            "steps",
            "instances",
            "seeds",
            "n_actions",
            "n_states",
            "samples",
            "groups",
            "epochs",
            "horizon",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_actions < 2:
            raise ValueError(f"n_actions must be >= 2, got {self.n_actions}")
        if not isinstance(self.vocab, int) or self.vocab < 2:
            raise ValueError(f"vocab must be an integer >= 2, got {self.vocab!r}")
        if self.vocab**self.horizon > 1_000_000:
            raise ValueError(
                f"vocab**horizon = {self.vocab**self.horizon} sequences is too many for a tabular LM"
            )
        if self.match_threshold is None:
            self.match_threshold = (self.horizon + 1) // 2
        if not 1 <= self.match_threshold <= self.horizon:
            raise ValueError(
                f"match_threshold must lie in [1, horizon={self.horizon}], got {self.match_threshold}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("lr", "init_scale"):
            value = float(getattr(self, name))
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must lie in [0, 1), got {self.gamma}")
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")
        if self.rule == "entropy_npg":
            horizon = 1.0 - (self.gamma if self.world == "mdp" else 0.0)
            if self.lr * self.tau > horizon + 1e-12:
                raise ValueError(
                    f"entropy_npg needs lr*tau <= {horizon} (contraction), got {self.lr * self.tau}"
                )
        if self.rule == "grpo" and self.samples < 2:
            raise ValueError("grpo needs samples (group size) >= 2 for a group-relative advantage")
        if not isinstance(self.objective_kwargs, dict):
            raise ValueError(f"objective_kwargs must be a dict, got {type(self.objective_kwargs).__name__}")
        if self.rule == "grpo":  # names and ranges of the objective's hyperparameters, before any run
            from theory.objectives import validate_objective_params  # torch-backed: imported on use

            validate_objective_params(self.objective, self.objective_kwargs)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a non-empty string, got {self.device!r}")

    @property
    def batch(self) -> int:
        """B = instances * seeds, the leading batch dimension of every tensor."""
        return self.instances * self.seeds

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view (what ``config.json`` stores under ``"config"``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SimConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        if "adv_norm" in data and "advantage" not in data:  # configs saved before adv_norm became advantage
            data = dict(data)
            old = data.pop("adv_norm")
            data["advantage"] = {"std": "grpo", "mean": "drgrpo"}.get(old, old)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SimConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)
