"""What every simulator step records: the observed entropy change next to each prediction of it.

For logits z ``[B, S, n]`` before the step, the actual change δ = z' − z, and the world's exact
advantages A with PG weights w(s) (all from ``theory``; nothing re-derived here):

=====================  ===========================================================  ==================
key                    quantity                                                     reference
=====================  ===========================================================  ==================
``entropy``            H(π_s) before the step                                       paper Eq. 5
``dH_obs``             H(z + δ) − H(z)                                              exact
``dH_first``           −Cov_π(log π, δ)                                             Lemma 1
``dH_second``          first order − ½[Var_π δ + E_π((ℓ + H)(δ − Eδ)²)]             docs/theory.md §1.4
``dH_thm1``            −η Cov_π(log π, π ⊙ (w A − E_π w A))  (exact PG step)        Theorem 1
``dH_thm2``            −η c Cov_π(log π, A)                  (exact NPG step)       Theorem 2
``first_order_bound``  ½ R² (¼ + 2 log n), R = max δ − min δ                        docs/theory.md §1.5
=====================  ===========================================================  ==================

Each is ``[B, S]`` per step; ``agg_<key>`` is Σ_s ω(s)·value with the world's aggregate weights ω
(ρ, normalised visitation, or reach/L) at the pre-step policy, themselves stored as ``state_weight``
``[B, S]``. Per run ``[B]``: ``reward`` (exact expected return; the success probability, i.e. accuracy,
of the tabular LM), and for sampled rules ``sampled_reward`` (batch mean) and ``cov_eq10`` (mean over the
batch tokens of paper Eq. 10, ``theory.token_covariance`` of log π_old and the advantages used) and
``cov_eq8`` (the response-level covariance of paper Eqs. 8-9 over the instance's M responses, one prompt's
group: ``theory.covariance.response_covariance``, ``pg`` form), NaN for exact rules; ``metric_<name>``
for objective metrics (``/`` in a name becomes ``.``).
"""

from __future__ import annotations

import torch

from theory import entropy_step_report, predicted_entropy_change, token_covariance
from theory.covariance import response_covariance

from .rules import StepResult
from .world_base import Exact

PER_STATE_KEYS: tuple[str, ...] = (
    "entropy",
    "dH_obs",
    "dH_first",
    "dH_second",
    "dH_thm1",
    "dH_thm2",
    "first_order_bound",
)


def batch_covariance(old_log_prob: torch.Tensor, token_adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of paper Eq. 10's Cov(y_i) = (log π(y_i) − mean log π)(A_i − mean A) over each run's tokens.

    Calls ``theory.token_covariance`` once per run so that the means never pool independent runs.

    Args:
      old_log_prob, token_adv: ``[B, M, T]``; mask: ``[B, M, T]`` bool.
    Returns:
      ``[B]``.
    """
    if not (old_log_prob.shape == token_adv.shape == mask.shape) or old_log_prob.dim() != 3:
        raise ValueError("old_log_prob, token_adv and mask must share one [B, M, T] shape")
    out = []
    for b in range(old_log_prob.shape[0]):
        cov = token_covariance(old_log_prob[b], token_adv[b], mask[b])  # [M, T]
        out.append(cov.sum() / mask[b].sum().clamp_min(1))
    return torch.stack(out)


def response_level_covariance(old_log_prob: torch.Tensor, token_adv: torch.Tensor,
                              mask: torch.Tensor) -> torch.Tensor:
    """Paper Eqs. 8-9 per run: the M responses of each run are one prompt's group; a response's advantage is
    the mean of its tokens' advantages (GRPO copies one value to every token).

    Args:
      old_log_prob, token_adv: ``[B, M, T]``; mask: ``[B, M, T]`` bool.
    Returns:
      ``[B]`` (NaN for a run with an empty response).
    """
    if not (old_log_prob.shape == token_adv.shape == mask.shape) or old_log_prob.dim() != 3:
        raise ValueError("old_log_prob, token_adv and mask must share one [B, M, T] shape")
    out = []
    for b in range(old_log_prob.shape[0]):
        m = mask[b].bool()
        n = m.sum(-1)
        if bool((n == 0).any()):
            out.append(torch.full((), float("nan"), dtype=old_log_prob.dtype, device=old_log_prob.device))
            continue
        adv = (token_adv[b] * m).sum(-1) / n
        groups = torch.zeros(m.shape[0], dtype=torch.long, device=m.device)
        out.append(response_covariance(old_log_prob[b], m, adv, groups, "pg")["batch_mean"])
    return torch.stack(out)


def record_step(logits: torch.Tensor, result: StepResult, ex: Exact, lr: float) -> dict[str, torch.Tensor]:
    """Every recorded quantity of one step (see the module table), as device tensors, no host sync.

    Args:
      logits: ``[B, S, n]`` before the step; result: the rule's :class:`StepResult`; ex: the world's
        :class:`Exact` at ``logits``; lr: η used by the theorem predictions.
    Returns:
      dict of ``[B, S]`` (per state) and ``[B]`` (aggregated / per run) tensors.
    """
    if result.logits.shape != logits.shape:
        raise ValueError(
            f"new logits have shape {tuple(result.logits.shape)}, expected {tuple(logits.shape)}"
        )
    delta = result.logits - logits
    report = entropy_step_report(logits, delta)  # H, exact, Lemma 1, second order, bound in one pass
    rec = {
        "entropy": report["entropy"],
        "dH_obs": report["exact"],
        "dH_first": report["first_order"],
        "dH_second": report["second_order"],
        "dH_thm1": predicted_entropy_change(logits, ex.adv * ex.pg_weight.unsqueeze(-1), lr, "pg"),
        "dH_thm2": predicted_entropy_change(logits, ex.adv, lr * ex.npg_scale, "npg"),
        "first_order_bound": report["bound"],
    }
    for key in PER_STATE_KEYS:
        rec[f"agg_{key}"] = (ex.agg_weight * rec[key]).sum(-1)
    rec["state_weight"] = ex.agg_weight
    rec["reward"] = ex.reward
    nan = torch.full_like(ex.reward, float("nan"))
    if result.batch is not None:
        rec["sampled_reward"] = result.batch.rewards.mean(-1).to(ex.reward.dtype)
        rec["cov_eq10"] = batch_covariance(result.old_log_prob, result.token_adv, result.batch.mask).to(
            nan.dtype
        )
        rec["cov_eq8"] = response_level_covariance(result.old_log_prob, result.token_adv,
                                                   result.batch.mask).to(nan.dtype)
    else:
        rec["sampled_reward"], rec["cov_eq10"], rec["cov_eq8"] = nan, nan, nan
    for name, value in result.metrics.items():
        rec["metric_" + name.replace("/", ".")] = value
    return rec
