"""Configuration of an RL run as dataclasses: every field documented in place, validated on creation.

``TrainConfig`` nests one dataclass per concern (task/data, rollout, objective, optimisation, schedule of
validation/checkpoints). The resolved config is written to ``<out>/config.json`` with the environment
(``rundir.files.save_run_config``) at the start of every run, and ``from_dict`` rebuilds it on resume.
``PretrainConfig`` is the warm start's (``llm_rl.pretrain``). Importing this module imports no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

# torch-free imports only (`entropy-mech <command> --help` reads this module): what needs torch-backed
# code is imported where it is used
from theory.names import ADVANTAGE_ESTIMATORS, AGG_MODES
from theory.names import KL_ESTIMATORS as REF_KL_ESTIMATORS

from .objective_choice import resolve_objective_name
from .tasks import TASKS, make_task

#: tracking backends of TrainConfig.report_to (llm_rl.tracking.BACKENDS implements them)
TRACKING_BACKENDS = ("tensorboard", "wandb")
#: keys the trainer adds next to the config in config.json (facts about the run, not settings)
RUN_INFO_KEYS = ("objective_resolved", "world_size")
#: the warning of a KL-Cov run whose every update is on-policy (docs/theory.md §1.10: at ρ ≡ 1 the penalty
#: β|log ρ| and its subgradient are 0, so the run is vanilla policy gradient), given by the trainer and by
#: integrations.trl's config; ``how`` says what to change
ON_POLICY_KL_COV = (
    "kl_cov runs fully on-policy here (every optimizer step has π_old = π_θ, ρ ≡ 1), where its KL penalty "
    "β|log ρ| and its gradient are exactly zero: it reduces to unclipped vanilla policy gradient (only its "
    "selection metrics are logged); {how} so the penalty acts")


def check_scalar(value, name, **kw):
    """``theory._checks.check_scalar`` (ValueError unless a finite real number within the bounds given),
    imported on first use: ``theory._checks`` imports torch."""
    from theory._checks import check_scalar as check

    return check(value, name, **kw)


def _pos_int(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{type(obj).__name__}.{n} must be a positive int, got {v!r}")


def _choice(obj, name, choices):
    v = getattr(obj, name)
    if v not in choices:
        raise ValueError(f"{type(obj).__name__}.{name}={v!r} is invalid; choose one of: {', '.join(choices)}")


@dataclass
class DataConfig:
    """Which task and which fixed splits (must match the warm start's for a clean validation set)."""

    task: str = "arithmetic"
    """task name (llm_rl.tasks.TASKS)"""
    task_knobs: dict = field(default_factory=dict)
    """difficulty knobs for the task constructor"""
    split_seed: int = 0
    """seed of the fixed train/validation splits"""
    n_train: int = 4000
    """training prompts (iterated in a seeded shuffled order, epoch after epoch)"""
    n_val: int = 256
    """validation prompts"""

    def __post_init__(self):
        _choice(self, "task", sorted(TASKS))
        make_task(self.task, **self.task_knobs)
        _pos_int(self, "n_train", "n_val")


@dataclass
class RolloutConfig:
    """Sampling of the GRPO groups."""

    prompts_per_step: int = 16
    """groups per rollout step (before dynamic sampling)"""
    group_size: int = 8
    """responses per prompt (n in GRPO)"""
    temperature: float = 1.0
    """rollout sampling temperature (the paper uses 1)"""
    max_new_tokens: int = 0
    """response length cap; 0 = the task's own max_response_chars"""
    dynamic_sampling: bool = True
    """drop groups whose rewards are all equal and draw more prompts (DAPO-style)"""
    max_sampling_rounds: int = 3
    """dynamic sampling: at most this many rollout rounds per step (the batch may end up smaller)"""

    def __post_init__(self):
        _pos_int(self, "prompts_per_step", "group_size", "max_sampling_rounds")
        if self.group_size < 2:
            raise ValueError("RolloutConfig.group_size must be >= 2 (group-normalised advantages)")
        check_scalar(self.temperature, "temperature", positive=True)
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {self.max_new_tokens!r}")


@dataclass
class ObjectiveConfig:
    """The surrogate objective (from ``theory.objectives``) and what is added to it."""

    name: str = "grpo"
    """objective name in theory.objectives (grpo is an alias of ppo_clip)"""
    params: dict = field(default_factory=dict)
    """hyperparameters passed to the objective (e.g. eps_high, clip_ratio, kl_ratio, kl_coef); theory's
    defaults apply to anything not given"""
    advantage: str = "grpo"
    """advantage estimator: grpo ((r - mean)/(std + eps) per group) or drgrpo (r - mean)"""
    agg_mode: str = "token-mean"
    """loss aggregation mode (theory.aggregation); drgrpo pairs with seq-mean-token-sum-norm"""
    entropy_coef: float = 0.0
    """coefficient of the additive entropy bonus (0 = off)"""
    ref_kl_coef: float = 0.0
    """coefficient of the additive KL to the initial (reference) policy (0 = off)"""
    ref_kl_estimator: str = "k3"
    """estimator of the reference KL: k1, k2 or k3"""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ObjectiveConfig.name must be a non-empty string")
        _choice(self, "advantage", ADVANTAGE_ESTIMATORS)
        _choice(self, "agg_mode", AGG_MODES)
        _choice(self, "ref_kl_estimator", REF_KL_ESTIMATORS)
        check_scalar(self.entropy_coef, "entropy_coef")
        check_scalar(self.ref_kl_coef, "ref_kl_coef", nonnegative=True)
        if not isinstance(self.params, dict):
            raise ValueError("ObjectiveConfig.params must be a dict")
        from theory.objectives import validate_objective_params  # torch-backed: imported on use

        validate_objective_params(resolve_objective_name(self.name), self.params)  # names and value ranges


@dataclass
class OptimConfig:
    """PPO-style update of the policy."""

    optimizer: str = "adamw"
    """adamw (torch.optim.AdamW) or sgd (plain gradient steps, torch.optim.SGD: Theorem 1's update rule,
    whose step size the entropy-dynamics diagnostics then use as the theorem's eta)"""
    lr: float = 1e-4
    """learning rate (constant after warm-up)"""
    betas: tuple = (0.9, 0.99)
    """AdamW betas"""
    weight_decay: float = 0.0
    """weight decay (AdamW: decoupled; SGD: added to the gradient)"""
    momentum: float = 0.0
    """SGD momentum in [0, 1) (sgd only; 0 = plain gradient steps)"""
    warmup_steps: int = 0
    """linear learning-rate warm-up in optimizer steps"""
    grad_clip: float = 1.0
    """max global gradient norm (0 = no clipping)"""
    ppo_epochs: int = 1
    """passes over each rollout batch"""
    num_minibatches: int = 8
    """optimizer steps per epoch: the rollout batch is split into this many mini-batches (>1 makes later
    mini-batches off-policy, so clipping and KL-Cov act; the paper does 8 updates per rollout step)"""
    micro_batch_size: int = 64
    """sequences per forward/backward pass (gradient accumulation inside a mini-batch)"""

    def __post_init__(self):
        check_scalar(self.lr, "lr", positive=True)
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        check_scalar(self.momentum, "momentum", nonnegative=True)
        if not self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError("momentum applies to optimizer 'sgd' only (AdamW's first moment is betas[0])")
        check_scalar(self.weight_decay, "weight_decay", nonnegative=True)
        check_scalar(self.grad_clip, "grad_clip", nonnegative=True)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(float(b) for b in self.betas)
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        _pos_int(self, "ppo_epochs", "num_minibatches", "micro_batch_size")


@dataclass
class TrainConfig:
    """A whole RL run."""

    steps: int = 100
    """rollout steps (each = one rollout batch + ppo_epochs * num_minibatches optimizer steps)"""
    seed: int = 0
    """seed of rollouts, data order and mini-batch shuffling"""
    model: str = ""
    """local model directory (save_pretrained format); empty = the cached warm start for the task"""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N; bf16 autocast is used on CUDA"""
    val_every: int = 10
    """validate every this many steps (and at step 0 and the last step)"""
    val_samples: int = 4
    """samples per validation prompt for the temperature-0.6 accuracy"""
    val_temperature: float = 0.6
    """temperature of the sampled validation accuracy"""
    checkpoint_every: int = 10
    """write a checkpoint every this many steps (and at the end)"""
    tensorboard: bool = False
    """also write TensorBoard event files (torch.utils.tensorboard); the same as 'tensorboard' in report_to"""
    report_to: tuple[str, ...] = ()
    """tracking backends besides metrics.jsonl: tensorboard (<out>/tensorboard, with the config as hparams),
    wandb (Weights & Biases; project from $WANDB_PROJECT, WANDB_MODE=offline works without network); the
    same metric names in each"""
    diagnose_every: int = 0
    """entropy-dynamics diagnostics (llm_rl/diagnostics.py) on the first optimizer step of every this
    many rollout steps; 0 = off"""
    diagnose_max_states: int = 64
    """probe token states (unique prefixes) per diagnosed step, found in a seeded random order of the
    mini-batch's positions; each costs one backward pass pair in the entropy-change decomposition"""
    data: DataConfig = field(default_factory=DataConfig)
    """task and splits"""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """group sampling"""
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """surrogate objective"""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """optimisation"""

    def __post_init__(self):
        _pos_int(self, "steps", "val_every", "val_samples", "checkpoint_every", "diagnose_max_states")
        if not isinstance(self.diagnose_every, int) or self.diagnose_every < 0:
            raise ValueError(f"diagnose_every must be an int >= 0 (0 = off), got {self.diagnose_every!r}")
        check_scalar(self.val_temperature, "val_temperature", positive=True)
        if isinstance(self.report_to, str) or not all(b in TRACKING_BACKENDS for b in self.report_to):
            raise ValueError(f"report_to={self.report_to!r} is invalid; give a list of: "
                             f"{', '.join(TRACKING_BACKENDS)}")
        self.report_to = tuple(dict.fromkeys(self.report_to))  # a saved list becomes a tuple again
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild (and re-validate) from ``dataclasses.asdict`` output (``RUN_INFO_KEYS`` are skipped)."""
        sub = {"data": DataConfig, "rollout": RolloutConfig, "objective": ObjectiveConfig,
               "optim": OptimConfig}
        kw = {k: (sub[k](**v) if k in sub else v) for k, v in d.items() if k not in RUN_INFO_KEYS}
        if "optim" in kw:
            kw["optim"].betas = tuple(kw["optim"].betas)
        return cls(**kw)

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        return dataclasses.asdict(self)


#: bump when the warm-start recipe (llm_rl/pretrain.py) changes in a way the config does not capture
CACHE_VERSION = 1


@dataclass
class PretrainConfig:
    """Everything that determines the warm start of ``llm_rl.pretrain`` (its hash is the cache key)."""

    task: str = "arithmetic"
    """task name (see llm_rl.tasks.TASKS)"""
    task_knobs: dict = field(default_factory=dict)
    """difficulty knobs passed to the task constructor"""
    split_seed: int = 0
    """seed of the fixed train/validation splits (shared with RL runs)"""
    n_train: int = 4000
    """number of training prompts"""
    n_val: int = 256
    """number of validation prompts"""
    wrong_frac: float | None = None
    """probability that a training example uses a plausible wrong solution (a random one-off slip);
    None: the task's default (``Task.warm_start_mix``)"""
    misconception_frac: float | None = None
    """probability that a training example uses the task's systematic misconception
    (``Task.misconceived_solution``, e.g. forgetting carries) where it changes the answer; above the
    correct share it makes the greedy answer wrong on those problems, which RL can then fix; None: the
    task's default (``Task.warm_start_mix``)"""
    steps: int = 3000
    """optimizer steps"""
    batch_size: int = 64
    """sequences per step"""
    lr: float = 3e-3
    """peak AdamW learning rate"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    warmup_steps: int = 100
    """linear warm-up steps before cosine decay to 10% of lr"""
    seed: int = 0
    """seed of model initialisation and example sampling"""
    model_sizes: dict = field(default_factory=dict)
    """overrides of llm_rl.model.default_model_config sizes (hidden_size, num_layers, ...)"""

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of: {', '.join(sorted(TASKS))}")
        task = make_task(self.task, **self.task_knobs)  # validates knobs
        if self.wrong_frac is None:
            self.wrong_frac = task.warm_start_mix[0]
        if self.misconception_frac is None:
            self.misconception_frac = task.warm_start_mix[1]
        for name in ("n_train", "n_val", "steps", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative int, got {self.warmup_steps!r}")
        for name in ("wrong_frac", "misconception_frac"):
            if not isinstance(getattr(self, name), (int, float)) or not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1), got {getattr(self, name)!r}")
        if self.wrong_frac + self.misconception_frac >= 1.0:
            raise ValueError("wrong_frac + misconception_frac must be < 1 (some examples must be correct)")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")
        from .model import check_model_sizes  # imports torch and transformers: on use only

        check_model_sizes(self.model_sizes)

    def digest(self) -> str:
        """sha256 of the canonical JSON of this config, plus the recipe version, the task's *resolved* knobs
        (its defaults included, so a changed task default never serves a stale warm start) and the content
        hash of every file named by a ``*_path`` task knob (an edited prompt file is never served stale)."""
        from .tasks import make_task  # torch-free, but only needed here

        files = {k: hashlib.sha256(Path(v).read_bytes()).hexdigest()
                 for k, v in sorted(self.task_knobs.items())
                 if k.endswith("_path") and isinstance(v, str) and Path(v).is_file()}
        knobs = make_task(self.task, **self.task_knobs).knobs()
        blob = json.dumps({"v": CACHE_VERSION, **dataclasses.asdict(self), "task_resolved": knobs,
                           **({"files": files} if files else {})},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()
