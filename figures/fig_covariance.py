"""Covariance vs entropy change, covariance by prompt accuracy, and the token-covariance distribution
(Cui et al. 2025, Theorem 1/2 check of §3.3: Fig. 8 left and right; Table 1; Eq. 10).

* Fig. 8 left: Cov (paper Eq. 10 batch mean: ``cov/batch_mean`` of an LLM run, ``cov_eq10`` of a
  simulator run) and −ΔH per step. Graded by the Pearson r of the raw per-step series with a 95%
  moving-block bootstrap interval (:func:`theory.agreement.block_bootstrap_corr`); the r of the
  9-step moving averages is shown beside it. The paper's own §3.3 covariance, response-level (Eqs. 8-9:
  length-normalised response log-likelihood against π(y|x)·A per prompt group, averaged over the batch;
  ``theory.covariance.response_covariance``), is drawn and correlated the same way where the run records
  it (simulator ``cov_eq8``; LLM ``cov/response_eq8``).
* Fig. 8 right: covariance by prompt accuracy. The LLM trainer logs only the batch mean, so this uses
  simulator tabular-LM GRPO runs, where each of the B instances is one prompt with one group of G
  responses per step: its group accuracy (``sampled_reward``) and covariance (``cov_eq10``) per step.
* Table 1: mean Eq. 10 covariance of the top 0.02/0.2/2/20/50% tokens and of all tokens at the first
  update. The trainer does not save per-token covariances, so it is computed on the first GRPO batch of
  a tabular-LM simulator with random initial logits (``simulators`` entry points, seeded).
"""

from __future__ import annotations

import math

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from theory import token_covariance

from theory.agreement import block_bootstrap_corr
from .curves import load_many, smooth
from .style import color, new_figure, save_figure, SMALL_LEGEND

TOP_PERCENT = (0.02, 0.2, 2.0, 20.0, 50.0, 100.0)
MIN_GROUP_STATES = 5
"""a Table 1 group averaging fewer token states than this is marked "too few states": its mean is one or
two tokens' covariance, not the tail of a distribution"""


def top_group_size(n: int, percent: float) -> int:
    """Token states in the top-``percent``% group of ``n`` (at least one): max(1, floor(n p / 100)), the
    rule of ``llm_rl.diagnostics.top_percent_means`` and of :func:`covariance_percentiles`."""
    if n < 1 or not 0 < percent <= 100:
        raise ValueError(f"need n >= 1 and 0 < percent <= 100, got n={n}, percent={percent}")
    return max(1, math.floor(n * percent / 100))
"""Table 1 groups (percent of tokens by covariance, largest first; 100 = all)"""
ACC_BINS = {"low (acc <= 0.25)": (0.0, 0.25), "mid (0.375-0.625)": (0.3, 0.65),
            "high (acc >= 0.75)": (0.7, 0.99)}
"""group-accuracy bins standing in for the paper's 0.125 / 0.5 / 0.875 groups (all-0 and all-1 groups
have no covariance and are left out)"""


def _pearson(x, y) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.std(x[keep]) == 0 or np.std(y[keep]) == 0:
        return float("nan")
    return float(np.corrcoef(x[keep], y[keep])[0, 1])


@dataclass(frozen=True)
class CovDhRun:
    """One run of Fig. 8 left: smoothed Cov and −ΔH per step and how alike they are."""

    label: str
    kind: str
    step: np.ndarray
    cov: np.ndarray
    neg_dH: np.ndarray
    pearson: float
    """Pearson r of the smoothed series (shown, not graded)"""
    pearson_raw: float
    """Pearson r of the raw per-step series (graded)"""
    cov_positive_share: float
    """share of steps with smoothed Cov > 0"""
    pearson_raw_ci: tuple[float, float] = (float("nan"), float("nan"))
    """95% moving-block bootstrap interval of :attr:`pearson_raw`"""
    cov_response: np.ndarray | None = None
    """smoothed response-level covariance (Eqs. 8-9); None when the run does not record it"""
    response_pearson_raw: float = float("nan")
    response_pearson_raw_ci: tuple[float, float] = (float("nan"), float("nan"))
    response_pearson: float = float("nan")
    """smoothed-series r of the response-level covariance against −ΔH"""
    response_positive_share: float = float("nan")


@dataclass(frozen=True)
class AccuracyBin:
    """Covariance of the instances whose group accuracy falls in one :data:`ACC_BINS` bin."""

    step: np.ndarray
    cov: np.ndarray
    """smoothed mean covariance per step"""
    mean: float
    """mean covariance over every (step, instance) in the bin"""
    n: int
    """(step, instance) pairs in the bin"""


@dataclass(frozen=True)
class AccuracyGroups:
    """Fig. 8 right: bin name -> :class:`AccuracyBin` over ``n_runs`` simulator GRPO runs."""

    bins: dict[str, AccuracyBin]
    n_runs: int


@dataclass(frozen=True)
class CovarianceResult:
    """Data behind paper Fig. 8 (left: :attr:`cov_dh`, right: :attr:`by_accuracy`)."""

    cov_dh: tuple[CovDhRun, ...]
    by_accuracy: AccuracyGroups
    files: tuple[Path, ...] = ()

    def first(self, kind: str) -> CovDhRun | None:
        """The first run of ``kind`` (``"llm"`` or ``"sim"``), None when there is none."""
        return next((r for r in self.cov_dh if r.kind == kind), None)


@dataclass(frozen=True)
class Table1Result:
    """Table 1 analogue (:func:`covariance_percentiles`): mean Eq. 10 covariance of the top-p% tokens."""

    top_percent: np.ndarray
    mean_cov: np.ndarray
    n_tokens: int
    config: dict
    """the simulator configuration (``SimConfig.to_dict()``)"""


def cov_dh_data(curves, width: int = 9, seed: int = 0) -> tuple[CovDhRun, ...]:
    """Per run: step, smoothed Cov and −ΔH, the Pearson r of the raw series with its bootstrap interval
    (``seed``), that of the smoothed ones, the share of steps with Cov > 0, and the same for the
    response-level covariance where recorded."""
    runs = []
    for c in curves:
        if not np.isfinite(c.cov).any():
            continue
        cov_s, mdh_s = smooth(c.cov, width), smooth(-c.dH, width)
        r_raw, ci = block_bootstrap_corr(c.cov, -c.dH, seed=seed)
        extra = {}
        if c.cov_response is not None:
            resp_s = smooth(c.cov_response, width)
            rr, rci = block_bootstrap_corr(c.cov_response, -c.dH, seed=seed)
            extra = dict(cov_response=resp_s, response_pearson_raw=rr, response_pearson_raw_ci=rci,
                         response_pearson=_pearson(resp_s, mdh_s),
                         response_positive_share=float(np.mean(resp_s[np.isfinite(resp_s)] > 0)))
        runs.append(CovDhRun(label=c.label, kind=c.kind, step=c.step, cov=cov_s, neg_dH=mdh_s,
                             pearson=_pearson(cov_s, mdh_s), pearson_raw=r_raw, pearson_raw_ci=ci,
                             cov_positive_share=float(np.mean(cov_s[np.isfinite(cov_s)] > 0)), **extra))
    return tuple(runs)


def accuracy_group_data(curves, width: int = 9) -> AccuracyGroups:
    """Mean covariance per step in each :data:`ACC_BINS` bin over the instances of simulator GRPO runs."""
    sims = [c for c in curves if c.kind == "sim" and "sampled_reward" in c.arrays
            and np.isfinite(c.arrays["cov_eq10"]).any()]
    bins: dict[str, AccuracyBin] = {}
    if not sims:
        return AccuracyGroups(bins=bins, n_runs=0)
    acc = np.concatenate([c.arrays["sampled_reward"] for c in sims], axis=1)  # [steps, B total]
    cov = np.concatenate([c.arrays["cov_eq10"] for c in sims], axis=1)
    for name, (lo, hi) in ACC_BINS.items():
        m = (acc >= lo) & (acc <= hi) & (acc > 0) & (acc < 1)
        with np.errstate(invalid="ignore"):
            per_step = np.where(m.sum(1) > 0, (cov * m).sum(1) / np.maximum(m.sum(1), 1), np.nan)
        bins[name] = AccuracyBin(step=np.arange(acc.shape[0]), cov=smooth(per_step, width),
                                 mean=float(np.nansum(cov * m) / max(m.sum(), 1)), n=int(m.sum()))
    return AccuracyGroups(bins=bins, n_runs=len(sims))


def covariance_percentiles(seed: int = 0, vocab: int = 8, horizon: int = 4, samples: int = 16,
                           instances: int = 64, init_scale: float = 1.0) -> Table1Result:
    """Table 1 analogue: mean per-token Eq. 10 covariance of the top-p% tokens at the first GRPO batch.

    Covariances are centred per instance (one prompt's batch, as in the paper's per-batch Eq. 10),
    then pooled over instances and sorted.
    """
    from simulators.config import SimConfig
    from simulators.rules import make_rule
    from simulators.run import initial_logits
    from simulators.worlds import make_world

    cfg = SimConfig(world="tabular_lm", rule="grpo", objective="ppo_clip", vocab=vocab, horizon=horizon,
                    samples=samples, instances=instances, init="random", init_scale=init_scale, seed=seed,
                    steps=1, lr=0.05, optimizer="adam")
    gen = torch.Generator().manual_seed(cfg.seed)
    world = make_world(cfg, gen)
    z = initial_logits(cfg, world.n_states, world.n_actions, gen)
    res = make_rule(cfg, world, z, gen).step(z, world.exact(z))
    vals = []
    for b in range(res.old_log_prob.shape[0]):
        cov = token_covariance(res.old_log_prob[b], res.token_adv[b], res.batch.mask[b])
        vals.append(cov[res.batch.mask[b].bool()].detach().cpu().numpy())
    v = np.sort(np.concatenate(vals))[::-1]
    means = [float(v[: top_group_size(v.size, p)].mean()) for p in TOP_PERCENT]
    return Table1Result(top_percent=np.array(TOP_PERCENT), mean_cov=np.array(means), n_tokens=int(v.size),
                        config=cfg.to_dict())


def plot_covariance(run_dirs, out_stem: str | Path, pdf: bool = False) -> CovarianceResult:
    """Draw Fig. 8 left (Cov and −ΔH vs step, twin axes) and right (Cov by accuracy group)."""
    curves = load_many(run_dirs)
    data = CovarianceResult(cov_dh=cov_dh_data(curves), by_accuracy=accuracy_group_data(curves))
    fig, (ax, ax_g) = new_figure(2, width=4.6)
    twin = ax.twinx()
    for i, r in enumerate(data.cov_dh):
        ax.plot(r.step, r.cov, color=color(i), lw=1.2,
                label=f"{r.label} Eq. 10 (raw r={r.pearson_raw:.2f}, smoothed {r.pearson:.2f})")
        if r.cov_response is not None:
            ax.plot(r.step, r.cov_response, color=color(i), lw=1, ls=":",
                    label=f"{r.label} Eq. 8 (raw r={r.response_pearson_raw:.2f})")
        twin.plot(r.step, r.neg_dH, color=color(i), lw=1, ls="--")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set(xlabel="step", ylabel="Cov: Eq. 10 [solid], Eq. 8 [dotted]", title="Cov and -dH (Fig. 8 left)")
    twin.set_ylabel("-dH per step [dashed]")
    if data.cov_dh:
        ax.legend(fontsize=SMALL_LEGEND)
    for i, (name, b) in enumerate(data.by_accuracy.bins.items()):
        ax_g.plot(b.step, b.cov, color=color(i), label=name)
    ax_g.axhline(0, color="grey", lw=0.6)
    ax_g.set(xlabel="step", ylabel="Cov", title="Cov by prompt acc. (sim, Fig. 8 right)")
    if data.by_accuracy.bins:
        ax_g.legend()
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
