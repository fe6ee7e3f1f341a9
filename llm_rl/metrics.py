"""Every metric the trainer logs: one JSONL line per rollout step in ``<out>/metrics.jsonl``.

Each line is a JSON object with ``step`` (0-based rollout step) and namespaced keys from the table
below (plus the ``objective/*`` keys of ``theory.objectives.METRIC_DESCRIPTIONS``, averaged over
micro-batches weighted by their token counts). ``val/*`` keys appear only on validation steps; they
describe the policy *before* that step's update (the extra line with ``step == steps`` is the final
policy).

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
from pathlib import Path

KEYS: dict[str, str] = {
    "step": "0-based rollout step",
    "entropy/train": "paper's training entropy H on the rollout batch (per-response mean, then mean)",
    "entropy/token_mean": "per-token entropy averaged over all response tokens",
    "cov/batch_mean": "mean Eq. 10 centred product on the rollout batch",
    "reward/mean": "mean reward after dynamic sampling",
    "reward/raw_mean": "mean reward of every sampled response",
    "rollout/groups": "groups kept for the update",
    "rollout/groups_dropped": "zero-variance groups dropped",
    "rollout/rounds": "rollout rounds used",
    "rollout/response_len": "mean response length (tokens)",
    "rollout/tokens": "response tokens sampled this step (all rounds)",
    "loss/policy": "aggregated objective loss",
    "loss/total": "objective + additive terms",
    "optim/grad_norm": "gradient norm before clipping",
    "optim/lr": "learning rate",
    "optim/updates": "optimizer steps this rollout step",
    "val/acc": "greedy validation accuracy",
    "val/acc_sampled": "mean sampled validation accuracy at val_temperature",
    "val/acc_t1": "validation accuracy at temperature 1",
    "val/entropy": "entropy H of T=1 validation responses",
    "val/response_len": "mean T=1 validation response length",
    "time/rollout_s": "seconds sampling",
    "time/score_s": "seconds re-scoring",
    "time/update_s": "seconds updating",
    "time/val_s": "seconds validating",
    "time/diagnose_s": "seconds diagnosing (within update)",
    "time/step_s": "seconds for the whole step",
}


#: The paper's Table 1 groups: mean Eq. 10 covariance of the top p% tokens.
TOP_PERCENTS = (0.02, 0.2, 2.0, 20.0, 50.0, 100.0)

DIAG_KEYS: dict[str, str] = {
    "diag/states": "probe states diagnosed this step",
    "diag/dH_obs_sum": "Σ_s observed ΔH_s over the probe states",
    "diag/dH_first_sum": "Σ_s Lemma-1 prediction",
    "diag/dH_second_sum": "Σ_s second-order prediction",
    "diag/dH_tab_sum": "Σ_s tabular-theory prediction with the fitted η_eff",
    "diag/r2_first": "1 − Σ(obs − first)² / Σ(obs − mean obs)² over states (prediction taken as is)",
    "diag/r2_second": "the same for the second-order prediction",
    "diag/r2_tab": "the same for the tabular prediction (η_eff fitted)",
    "diag/slope_first": "least-squares slope of observed on Lemma-1 predicted ΔH",
    "diag/corr_tab": "Pearson correlation of the tabular prediction with observed ΔH",
    "diag/eta_eff": "η_eff = Σ obs·tab_unit / Σ tab_unit² (least squares through 0)",
    "diag/sign_acc_first": "fraction of states where sign(first) = sign(observed)",
    "diag/sign_acc_second": "the same for the second-order prediction",
    "diag/sign_acc_tab": "the same for the tabular prediction",
    "diag/rel_err_first": "median over states of |obs − first| / |obs|",
    "diag/rel_err_second": "median over states of |obs − second| / |obs|",
    "diag/cov_eq10": "mean over probe tokens of the Eq. 10 product (log π − mean)(A − mean)",
    "diag/cov_thm1": "mean over probe tokens of (log π − mean)(π·A − mean): the Theorem-1 proxy",
    "diag/cov_within": "within-group part of the pooled Eq. 10 covariance (groups = prompts)",
    "diag/cov_between": "between-group part (law of total covariance, theory.md §1.9)",
    **{f"diag/cov_top_{p:g}pct": f"mean Eq. 10 covariance of the top {p:g}% tokens (paper Table 1)"
       for p in TOP_PERCENTS},
}


def known_keys() -> dict[str, str]:
    """:data:`KEYS`, :data:`DIAG_KEYS` and the ``objective/*`` metrics defined by ``theory.objectives``."""
    from theory.objectives import METRIC_DESCRIPTIONS

    return {**KEYS, **DIAG_KEYS, **METRIC_DESCRIPTIONS}


class MetricsWriter:
    """Append-only JSONL writer that rejects undocumented keys and non-finite values become ``null``.

    On resume, :meth:`truncate_from` drops lines whose step is >= the resumed step, so a killed and
    resumed run has exactly one line per step.
    """

    def __init__(self, path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._known = known_keys()
        self._tb = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(tensorboard_dir))

    def truncate_from(self, step: int) -> None:
        """Keep only lines with ``step < step`` (atomically rewritten)."""
        if not self.path.exists():
            return
        from rundir.files import atomic_write_text

        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] < step]
        atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))

    def write(self, record: dict) -> None:
        """Append one line; ``record`` must contain ``step`` and only documented keys."""
        if "step" not in record:
            raise ValueError("a metrics record needs a 'step'")
        unknown = sorted(set(record) - set(self._known))
        if unknown:
            raise ValueError(f"undocumented metric key(s) {unknown}; add them to llm_rl/metrics.py")
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean, sort_keys=True) + "\n")
            f.flush()
        if self._tb is not None:
            for k, v in clean.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any."""
        if self._tb is not None:
            self._tb.close()
