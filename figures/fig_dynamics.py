"""LLM entropy dynamics state by state: observed ΔH against the Lemma-1 and tabular-theory predictions.

The paper checks Theorems 1-2 on LLMs only as two similar curves (its Fig. 8 left: batch covariance vs
−ΔH). Runs trained with ``--diagnose-every K`` (:mod:`llm_rl.diagnostics`) measure, for every token state
of a mini-batch, the exact entropy change of one optimizer step and its predictions. This module reads
them back:

* per run, :func:`llm_rl.diagnostics.summarize_run` (median R², sign accuracy, relative errors, η_eff);
* the paper's Table 1 groups (mean Eq. 10 covariance of the top 0.02 … 100% tokens) at the run's first
  diagnosed update, from the trainer's own batch (``diag/cov_top_*``);
* a figure: observed vs predicted ΔH per state at the first diagnosed update of the first run — left the
  Lemma-1 and second-order predictions from the measured logit change, right the tabular prediction
  with η_eff fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from llm_rl.diagnostics import r2_score, summarize_run
from rundir.diagnostics_files import has_per_state, load_per_state
from rundir.records import read_records
from llm_rl.metrics import TOP_PERCENTS

from .curves import load_curves
from .style import new_figure, save_figure, SMALL_LEGEND


def has_diagnostics(run_dir) -> bool:
    """True for an LLM run directory with at least one diagnosed step."""
    return has_per_state(run_dir)


@dataclass(frozen=True)
class DynamicsRun:
    """One diagnosed LLM run: its summary, and its first diagnosed update state by state."""

    label: str
    dir: str
    summary: dict[str, float]
    """:func:`llm_rl.diagnostics.summarize_run` (medians over diagnosed updates, pooled R², η_eff)"""
    first_step: int
    states: dict[str, np.ndarray]
    """per-state arrays of the first diagnosed update (``dH_obs``, ``dH_first``, …)"""
    table1: list[float]
    """mean Eq. 10 covariance of the top :data:`~llm_rl.metrics.TOP_PERCENTS` tokens at that update"""
    n_states_first: float


@dataclass(frozen=True)
class DynamicsResult:
    """Per diagnosed run (runs without diagnostics left out), and the Table 1 groups."""

    runs: tuple[DynamicsRun, ...]
    top_percent: tuple[float, ...] = TOP_PERCENTS
    files: tuple[Path, ...] = ()


def dynamics_data(run_dirs) -> DynamicsResult:
    """Per run: label, summary, first diagnosed step, its Table 1 row and per-state arrays. Runs
    without diagnostics are left out."""
    runs = []
    for d in run_dirs:
        if not has_diagnostics(d):
            continue
        rows = [r for r in read_records(Path(d) / "metrics.jsonl") if "diag/states" in r]
        if not rows:
            continue
        states = load_per_state(d)
        first = min(states)
        table1 = [rows[0].get(f"diag/cov_top_{p:g}pct", math.nan) for p in TOP_PERCENTS]
        runs.append(DynamicsRun(label=load_curves(d).label, dir=str(d), summary=summarize_run(d),
                                first_step=first, states=states[first], table1=table1,
                                n_states_first=rows[0]["diag/states"]))
    return DynamicsResult(runs=tuple(runs))


def _scatter(ax, series, obs, title):
    """Observed vs each predicted series ``[(label, pred)]`` with the y = x line."""
    lim = float(np.nanmax(np.abs(np.concatenate([obs, *(p for _, p in series)])))) * 1.05 or 1.0
    ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=0.8, zorder=0)
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    for (label, pred), marker in zip(series, ("o", "x")):
        ax.plot(pred, obs, marker, ms=3, alpha=0.6, label=label)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="predicted ΔH per state (nats)",
           ylabel="observed ΔH per state (nats)", title=title)
    ax.legend(loc="upper left", fontsize=SMALL_LEGEND)


def plot_dynamics(run_dirs, out_stem: str | Path, pdf: bool = False) -> DynamicsResult:
    """Draw observed vs predicted per-state ΔH of the first diagnosed update (see module docstring)."""
    data = dynamics_data(run_dirs)
    if not data.runs:
        raise ValueError("no run with diagnostics: train with --diagnose-every K")
    r = data.runs[0]
    s = r.states
    obs = s["dH_obs"].astype(float)

    fig, (a, b) = new_figure(2, height=3.8)
    first, second, tab = (s[k].astype(float) for k in ("dH_first", "dH_second", "dH_tab"))
    _scatter(a, [(f"Lemma 1, −Cov(log π, Δz): R² {r2_score(obs, first):.3f}", first),
                 (f"+ second order: R² {r2_score(obs, second):.4f}", second)], obs,
             "measured logit change Δz")
    _scatter(b, [(f"−η_eff Σ A (S_a − E S): R² {r2_score(obs, tab):.3f}", tab)], obs,
             "tabular theory (no function approx.)")
    fig.suptitle(f"{r.label}, update at step {r.first_step}: {len(obs)} token states", fontsize=9)
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
