"""Every metric the trainer logs: one JSONL line per rollout step in ``<out>/metrics.jsonl``.

Each line is a JSON object with ``step`` (0-based rollout step) and namespaced keys from the table
below (plus the ``objective/*`` keys of ``theory.objectives.METRIC_DESCRIPTIONS`` and the ``diag/*``
keys of :data:`DIAG_KEYS`). ``val/*`` keys appear only on validation steps; they describe the policy
*before* that step's update (the extra line with ``step == steps`` is the final policy). The trainer
names every key through the constants below (``ENTROPY_TRAIN``, ``LOSS_POLICY``, ...).

The update step's metrics (``loss/*``, ``optim/*``, ``objective/*``) come from many micro-batches,
optimizer steps and data-parallel ranks; :data:`REDUCTIONS` declares how each one is combined
(:class:`Reduce`) and :class:`UpdateMetrics` applies it.

====================  ============================================================================
key                   meaning
====================  ============================================================================
step                  0-based rollout step
entropy/train         the paper's training entropy H on this step's rollout batch: full-vocabulary
                      token entropy of π_old at T=1, masked mean per response, then mean over
                      responses (Cui et al. 2025 §2), nats
entropy/token_mean    the same per-token entropies averaged over all response tokens (token-mean)
cov/batch_mean        mean over response tokens of the Eq. 10 centred product
                      (log π_old − mean)(A − mean) on the rollout batch (theory.token_covariance)
cov/response_eq8      the paper's response-level covariance (Eqs. 8-9): per prompt, Cov over its
                      responses of the length-normalised log π_old(y) and π(y)·A(y), then the mean
                      over prompts (theory.response_covariance, form "pg")
reward/mean           mean reward of the rollout batch after dynamic sampling
reward/raw_mean       mean reward of every response sampled this step (before filtering)
rollout/groups        groups kept for the update
rollout/groups_dropped  zero-variance groups dropped by dynamic sampling
rollout/rounds        rollout rounds used by dynamic sampling
rollout/response_len  mean response length in tokens (kept groups)
rollout/tokens        response tokens sampled this step, all rounds (dropped groups included)
loss/policy           aggregated objective loss, mean over optimizer steps of this rollout step
loss/total            policy + entropy-bonus + reference-KL terms, mean over optimizer steps
optim/grad_norm       global gradient norm before clipping, mean over optimizer steps
optim/lr              learning rate of the last optimizer step
optim/updates         optimizer steps taken this rollout step
val/acc               greedy accuracy on the validation split (= val/acc_greedy)
val/acc_sampled       mean accuracy of val_samples responses per prompt at val_temperature (0.6)
val/acc_t1            accuracy of one response per prompt at temperature 1
val/entropy           paper's entropy H of temperature-1 validation responses, nats
val/response_len      mean length of the temperature-1 validation responses
time/rollout_s        wall seconds spent sampling (all dynamic-sampling rounds)
time/score_s          wall seconds re-scoring the batch (old log-probs, entropy, reference)
time/update_s         wall seconds of the PPO update
time/val_s            wall seconds of validation (0 when not validating)
time/diagnose_s       wall seconds of entropy-dynamics diagnostics, part of time/update_s (diagnosed steps)
time/step_s           wall seconds of the whole step
====================  ============================================================================
"""

from __future__ import annotations

import json
import math
import os
from enum import Enum
from pathlib import Path

from .distributed import DistInfo, gather_objects

STEP = "step"
ENTROPY_TRAIN = "entropy/train"
ENTROPY_TOKEN_MEAN = "entropy/token_mean"
COV_BATCH_MEAN = "cov/batch_mean"
COV_RESPONSE = "cov/response_eq8"
REWARD_MEAN = "reward/mean"
REWARD_RAW_MEAN = "reward/raw_mean"
ROLLOUT_GROUPS = "rollout/groups"
ROLLOUT_GROUPS_DROPPED = "rollout/groups_dropped"
ROLLOUT_ROUNDS = "rollout/rounds"
ROLLOUT_RESPONSE_LEN = "rollout/response_len"
ROLLOUT_TOKENS = "rollout/tokens"
LOSS_POLICY = "loss/policy"
LOSS_TOTAL = "loss/total"
OPTIM_GRAD_NORM = "optim/grad_norm"
OPTIM_LR = "optim/lr"
OPTIM_UPDATES = "optim/updates"
VAL_ACC = "val/acc"
VAL_ACC_SAMPLED = "val/acc_sampled"
VAL_ACC_T1 = "val/acc_t1"
VAL_ENTROPY = "val/entropy"
VAL_RESPONSE_LEN = "val/response_len"
TIME_ROLLOUT = "time/rollout_s"
TIME_SCORE = "time/score_s"
TIME_UPDATE = "time/update_s"
TIME_VAL = "time/val_s"
TIME_DIAGNOSE = "time/diagnose_s"
TIME_STEP = "time/step_s"

KEYS: dict[str, str] = {
    STEP: "0-based rollout step",
    ENTROPY_TRAIN: "paper's training entropy H on the rollout batch (per-response mean, then mean)",
    ENTROPY_TOKEN_MEAN: "per-token entropy averaged over all response tokens",
    COV_BATCH_MEAN: "mean Eq. 10 centred product on the rollout batch",
    COV_RESPONSE: "response-level covariance of paper Eqs. 8-9 on the rollout batch (mean over prompts)",
    REWARD_MEAN: "mean reward after dynamic sampling",
    REWARD_RAW_MEAN: "mean reward of every sampled response",
    ROLLOUT_GROUPS: "groups kept for the update",
    ROLLOUT_GROUPS_DROPPED: "zero-variance groups dropped",
    ROLLOUT_ROUNDS: "rollout rounds used",
    ROLLOUT_RESPONSE_LEN: "mean response length (tokens)",
    ROLLOUT_TOKENS: "response tokens sampled this step (all rounds)",
    LOSS_POLICY: "aggregated objective loss",
    LOSS_TOTAL: "objective + additive terms",
    OPTIM_GRAD_NORM: "gradient norm before clipping",
    OPTIM_LR: "learning rate",
    OPTIM_UPDATES: "optimizer steps this rollout step",
    VAL_ACC: "greedy validation accuracy",
    VAL_ACC_SAMPLED: "mean sampled validation accuracy at val_temperature",
    VAL_ACC_T1: "validation accuracy at temperature 1",
    VAL_ENTROPY: "entropy H of T=1 validation responses",
    VAL_RESPONSE_LEN: "mean T=1 validation response length",
    TIME_ROLLOUT: "seconds sampling",
    TIME_SCORE: "seconds re-scoring",
    TIME_UPDATE: "seconds updating",
    TIME_VAL: "seconds validating",
    TIME_DIAGNOSE: "seconds diagnosing (within update)",
    TIME_STEP: "seconds for the whole step",
}


class Reduce(str, Enum):
    """How one metric of the update step combines over micro-batches, optimizer steps and ranks."""

    #: Σ v·n / Σ n over micro-batches and ranks, n = the micro-batch's response tokens (rates, means)
    TOKEN_MEAN = "token_mean"
    #: Σ v over micro-batches and ranks, divided by the number of optimizer steps (losses, counts)
    STEP_SUM = "step_sum"
    #: mean over optimizer steps of a value every rank shares
    MEAN = "mean"
    #: value of the last optimizer step
    LAST = "last"
    #: Σ v over optimizer steps of a value every rank shares
    SUM = "sum"


#: Reductions of per-micro-batch values (partial on each rank: summed across ranks) and of
#: per-optimizer-step values (the same on every rank after the gradient all-reduce: not gathered).
_MICRO_BATCH = (Reduce.TOKEN_MEAN, Reduce.STEP_SUM)
_OPTIMIZER_STEP = (Reduce.MEAN, Reduce.LAST, Reduce.SUM)

#: The reduction of every metric of the update step: :data:`KEYS` entries and the ``objective/*``
#: metrics of ``theory.objectives.METRIC_DESCRIPTIONS`` (token fractions and means are token-weighted;
#: losses and token counts add up over the micro-batches of an optimizer step).
REDUCTIONS: dict[str, Reduce] = {
    LOSS_POLICY: Reduce.STEP_SUM,
    LOSS_TOTAL: Reduce.STEP_SUM,
    OPTIM_GRAD_NORM: Reduce.MEAN,
    OPTIM_LR: Reduce.LAST,
    OPTIM_UPDATES: Reduce.SUM,
    "objective/num_tokens": Reduce.STEP_SUM,
    "objective/selected_count": Reduce.STEP_SUM,
    **{f"objective/{name}": Reduce.TOKEN_MEAN for name in (
        "clip_frac_low", "clip_frac_high", "clip_frac", "candidate_frac", "selected_frac", "cov_mean",
        "cov_selected_mean", "approx_kl", "ppo_kl", "kl_penalty", "abs_log_ratio", "entropy", "ref_kl_k1",
        "ref_kl_k2", "ref_kl_k3")},
}


class UpdateMetrics:
    """Accumulates the metrics of one rollout step's update; each key combines as :data:`REDUCTIONS`
    declares (a key without a declared reduction is an error).

    Feed :meth:`add_micro_batch` once per micro-batch (this rank's partial values) and
    :meth:`add_optimizer_step` once per optimizer step; :meth:`result` combines the ranks (one
    all-gather) and returns ``{key: float}`` (``int`` for :data:`OPTIM_UPDATES`).
    """

    def __init__(self):
        self.steps = 0
        self._sum: dict[str, float] = {}  # per-rank partial sums (TOKEN_MEAN: Σ v·n; STEP_SUM: Σ v)
        self._weight: dict[str, float] = {}  # TOKEN_MEAN: Σ n
        self._shared: dict[str, list] = {}  # rank-shared values, one per optimizer step

    @staticmethod
    def _reduction(key: str, allowed) -> Reduce:
        how = REDUCTIONS.get(key)
        if how is None:
            raise ValueError(f"metric {key!r} has no reduction; declare one in llm_rl/metrics.py REDUCTIONS")
        if how not in allowed:
            raise ValueError(f"metric {key!r} reduces by {how.value}, which does not apply here")
        return how

    def add_micro_batch(self, values: dict, *, tokens: float) -> None:
        """One micro-batch's metrics (0-dim tensors or numbers); ``tokens``: its response tokens."""
        for k, v in values.items():
            how = self._reduction(k, _MICRO_BATCH)
            if how is Reduce.TOKEN_MEAN:
                self._sum[k] = self._sum.get(k, 0.0) + float(v) * tokens
                self._weight[k] = self._weight.get(k, 0.0) + tokens
            else:
                self._sum[k] = self._sum.get(k, 0.0) + float(v)

    def add_optimizer_step(self, values: dict) -> None:
        """The rank-shared values of one optimizer step (gradient norm, learning rate, ...)."""
        self.steps += 1
        for k, v in values.items():
            self._reduction(k, _OPTIMIZER_STEP)
            self._shared.setdefault(k, []).append(v if isinstance(v, (int, float)) else float(v))

    def result(self, dist: DistInfo) -> dict:
        """Every key combined over micro-batches, optimizer steps and (all-gathered) ranks."""
        sums, weights = {}, {}
        for s, w in gather_objects((self._sum, self._weight), dist):  # rank order
            for k, v in s.items():
                sums[k] = sums.get(k, 0.0) + v
                if k in w:
                    weights[k] = weights.get(k, 0.0) + w[k]
        out = {}
        for k, v in sums.items():
            if REDUCTIONS[k] is Reduce.TOKEN_MEAN:
                out[k] = v / max(weights[k], 1e-12)
            else:
                out[k] = v / max(self.steps, 1)  # per optimizer step
        for k, vals in self._shared.items():
            if REDUCTIONS[k] is Reduce.LAST:
                out[k] = vals[-1]
            elif REDUCTIONS[k] is Reduce.MEAN:
                out[k] = sum(vals) / len(vals)
            else:
                out[k] = sum(vals)
        return out

#: The paper's Table 1 groups: mean Eq. 10 covariance of the top p% tokens.
TOP_PERCENTS = (0.02, 0.2, 2.0, 20.0, 50.0, 100.0)

DIAG_KEYS: dict[str, str] = {
    "diag/states": "probe states diagnosed this step",
    "diag/samples": "sampled tokens at the probe states (every response through each probed prefix)",
    "diag/dH_obs_sum": "Σ_s observed ΔH_s over the probe states",
    "diag/dH_first_sum": "Σ_s Lemma-1 prediction",
    "diag/dH_second_sum": "Σ_s second-order prediction",
    "diag/dH_lin_sum": "Σ_s ΔH_lin: Lemma 1 on the linearised network change J_s Δθ (jvp along the step)",
    "diag/dH_own_sum": "Σ_s ΔH_own: the part produced by the tokens sampled at each state",
    "diag/dH_cross_sum": "Σ_s ΔH_cross: the part produced by the other tokens of the mini-batch",
    "diag/dH_hist_sum": "Σ_s ΔH_hist: the part produced by optimizer history (momentum, weight decay)",
    "diag/share_own": "Σ|ΔH_own| / Σ(|ΔH_own| + |ΔH_cross| + |ΔH_hist|) over states",
    "diag/share_cross": "the same for ΔH_cross (generalisation across states)",
    "diag/share_hist": "the same for ΔH_hist",
    "diag/recon_err": "‖Δθ_affine − Δθ‖/‖Δθ‖: the optimizer step as P ⊙ g + history vs the step taken",
    "diag/sum_gap": "|Σ(own + cross + hist) − Σ lin| / Σ|lin|: the decomposition's closure",
    "diag/r2_lin": "R² of ΔH_lin against observed ΔH (1 − R² measures the network's nonlinearity)",
    "diag/r2_own": "R² of ΔH_own against observed ΔH",
    "diag/sign_acc_lin": "fraction of states where sign(ΔH_lin) = sign(observed)",
    "diag/sign_acc_own": "the same for ΔH_own",
    "diag/eta_thm1": "η of the Theorem-1 prediction: lr·c for plain SGD, else fitted with η >= 0",
    "diag/eta_thm1_from_lr": "1 when the Theorem-1 η is the optimizer's step size (plain SGD), 0 when fitted",
    "diag/eta_thm2": "η of the Theorem-2 (natural-gradient) prediction, fitted with η >= 0",
    "diag/r2_thm1": "R² of the Theorem-1 prediction η Σ_i w_i (−A_i)(S_{a_i} − E_π S) against observed ΔH",
    "diag/r2_thm2": "R² of the Theorem-2 prediction η Σ_i w_i (−A_i)(log π_{a_i} + H) against observed ΔH",
    "diag/corr_thm1": "Pearson correlation of the Theorem-1 prediction (unit step) with observed ΔH",
    "diag/corr_thm2": "the same for Theorem 2",
    "diag/sign_acc_thm1": "fraction of states where sign(Theorem 1) = sign(observed)",
    "diag/sign_acc_thm2": "the same for Theorem 2",
    "diag/r2_first": "1 − Σ(obs − first)² / Σ(obs − mean obs)² over states (prediction taken as is)",
    "diag/r2_second": "the same for the second-order prediction",
    "diag/slope_first": "least-squares slope of observed on Lemma-1 predicted ΔH",
    "diag/sign_acc_first": "fraction of states where sign(first) = sign(observed)",
    "diag/sign_acc_second": "the same for the second-order prediction",
    "diag/rel_err_first": "median over states of |obs − first| / |obs|",
    "diag/rel_err_second": "median over states of |obs − second| / |obs|",
    "diag/cov_eq10": "mean over probe tokens of the Eq. 10 product (log π − mean)(A − mean)",
    "diag/cov_thm1": "mean over probe tokens of (log π − mean)(π·A − mean): the Theorem-1 proxy",
    "diag/cov_within": "within-group part of the pooled Eq. 10 covariance (groups = prompts)",
    "diag/cov_between": "between-group part (law of total covariance, docs/theory.md §1.9)",
    **{f"diag/cov_top_{p:g}pct": f"mean Eq. 10 covariance of the top {p:g}% tokens (paper Table 1)"
       for p in TOP_PERCENTS},
}


def known_keys() -> dict[str, str]:
    """:data:`KEYS`, :data:`DIAG_KEYS` and the ``objective/*`` metrics defined by ``theory.objectives``."""
    from theory.objectives import METRIC_DESCRIPTIONS

    return {**KEYS, **DIAG_KEYS, **METRIC_DESCRIPTIONS}


class MetricsWriter:
    """Append-only JSONL writer that rejects undocumented keys and non-finite values become ``null``; each
    record also goes to every tracking backend (:mod:`llm_rl.tracking`) under the same names.

    On resume, :meth:`truncate_from` drops lines whose step is >= the resumed step, so a killed and
    resumed run has exactly one line per step.

    Args:
      path: the JSONL file.
      tensorboard_dir: also write TensorBoard event files there (:class:`llm_rl.tracking.TensorBoardBackend`).
      backends: further :class:`~llm_rl.tracking.TrackingBackend` objects (closed by :meth:`close`).
    """

    def __init__(self, path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None, *,
                 backends=()):
        from .tracking import TensorBoardBackend

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._known = known_keys()
        self.backends = list(backends)
        if tensorboard_dir is not None:
            self.backends.append(TensorBoardBackend(tensorboard_dir))

    def log_config(self, config: dict) -> None:
        """Give every backend the resolved config of the run (once per run; not on resume)."""
        for backend in self.backends:
            backend.log_config(config)

    def truncate_from(self, step: int) -> None:
        """Keep only lines with ``step < step`` (atomically rewritten; a torn last line, left by a killed run,
        is dropped with a warning; any other bad line is an error naming file and line)."""
        if not self.path.exists():
            return
        from rundir.files import atomic_write_text
        from rundir.records import read_records

        keep = [rec for rec in read_records(self.path) if rec.get(STEP, step) < step]
        atomic_write_text(self.path, "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in keep))

    def write(self, record: dict) -> None:
        """Append one line; ``record`` must contain ``step`` and only documented keys."""
        if STEP not in record:
            raise ValueError("a metrics record needs a 'step'")
        unknown = sorted(set(record) - set(self._known))
        if unknown:
            raise ValueError(f"undocumented metric key(s) {unknown}; add them to llm_rl/metrics.py")
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean, sort_keys=True) + "\n")
            f.flush()
        values = {k: v for k, v in clean.items() if k != STEP and isinstance(v, (int, float))}
        for backend in self.backends:
            backend.log(values, record[STEP])

    def close(self) -> None:
        """Flush and close every backend."""
        for backend in self.backends:
            backend.close()


def open_run_writer(out: str | os.PathLike, config, *, resume: bool = False,
                    run_info: dict | None = None) -> MetricsWriter:
    """The writer of a training run in ``out``: ``out/metrics.jsonl`` plus the backends of
    ``config.report_to`` (and ``tensorboard`` when ``config.tensorboard``); a new run (``resume=False``)
    gives them the resolved config, ``config.to_dict()`` with ``run_info`` added (as in config.json)."""
    from .tracking import open_backends

    if not hasattr(config, "report_to") or not hasattr(config, "to_dict"):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    names = (*(("tensorboard",) if config.tensorboard else ()), *config.report_to)
    writer = MetricsWriter(Path(out) / "metrics.jsonl", backends=open_backends(out, names, resume=resume))
    if not resume:
        writer.log_config({**config.to_dict(), **(run_info or {})})
    return writer
