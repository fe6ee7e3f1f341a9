"""LLM entropy dynamics state by state: observed ΔH against each term of its decomposition.

The paper checks Theorems 1-2 on LLMs only as two similar curves (its Fig. 8 left: batch covariance vs
−ΔH). Runs trained with ``--diagnose-every K`` (:mod:`llm_rl.diagnostics`) measure, for every token state
of a mini-batch, the exact entropy change of one optimizer step and its decomposition (``dH_lin`` =
``dH_own`` + ``dH_cross`` + ``dH_hist``: the linearised network change split into the part produced by the
tokens sampled at that state, by the other tokens of the mini-batch, and by optimizer history) next to
the theorems' predictions (``dH_thm1``, ``dH_thm2``). This module reads them back:

* per run, :func:`llm_rl.diagnostics.summarize_run` (its ``decomposition`` dict when the run has one);
* the paper's Table 1 groups (mean Eq. 10 covariance of the top 0.02 … 100% tokens) at the run's first
  diagnosed update, from the trainer's own batch (``diag/cov_top_*``);
* a figure of the first diagnosed update of the first run: one panel per term (own, cross, history,
  linearised, Theorem 1), observed ΔH against it, R² and sign accuracy in the title; and a small
  Lemma-1 panel, an identity check on the measured logit change (not evidence of the mechanism). Panels
  whose arrays an older run folder lacks are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from llm_rl.diagnostics import summarize_run
from llm_rl.metrics import TOP_PERCENTS
from rundir.diagnostics_files import has_per_state, load_per_state
from rundir.records import read_records
from theory.agreement import r2, sign_accuracy

from .curves import load_curves
from .style import new_figure, save_figure


def has_diagnostics(run_dir) -> bool:
    """True for an LLM run directory with at least one diagnosed step."""
    return has_per_state(run_dir)


@dataclass(frozen=True)
class DynamicsRun:
    """One diagnosed LLM run: its summary, and its first diagnosed update state by state."""

    label: str
    dir: str
    summary: dict
    """:func:`llm_rl.diagnostics.summarize_run` (medians over diagnosed updates; ``decomposition`` when
    the run has one)"""
    first_step: int
    states: dict[str, np.ndarray]
    """per-state arrays of the first diagnosed update (``dH_obs``, ``dH_first``, ``dH_own``, …)"""
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


TERM_PANELS = (("dH_own", "own state's tokens"), ("dH_cross", "other states' tokens (cross)"),
               ("dH_hist", "optimizer history"), ("dH_lin", "linearised (own + cross + history)"),
               ("dH_thm1", "Theorem 1"))
"""per-state array -> panel title, in drawing order"""


def _scatter(ax, pred, obs, title, marker="o"):
    """Observed vs ``pred`` with the y = x line; R² (as is) and sign accuracy in the title."""
    lim = float(np.nanmax(np.abs(np.concatenate([obs, pred])))) * 1.05 or 1.0
    ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=0.8, zorder=0)
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    ax.plot(pred, obs, marker, ms=3, alpha=0.6)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="term (nats)", ylabel="observed ΔH per state (nats)",
           title=f"{title}\nR² {r2(obs, pred):.3f}, sign right {100 * sign_accuracy(obs, pred):.0f}%")
    ax.title.set_fontsize(8)


def panels(states: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """The (array, title) panels ``states`` supports: each :data:`TERM_PANELS` entry it holds, then the
    Lemma-1 identity panel when it holds ``dH_first``."""
    out = [(k, t) for k, t in TERM_PANELS if k in states]
    if "dH_first" in states:
        out.append(("dH_first", "Lemma 1 on the measured Δz (identity check)"))
    return out


def plot_dynamics(run_dirs, out_stem: str | Path, pdf: bool = False) -> DynamicsResult:
    """Draw observed ΔH against each term of the first diagnosed update (see module docstring)."""
    data = dynamics_data(run_dirs)
    if not data.runs:
        raise ValueError("no run with diagnostics: train with --diagnose-every K")
    r = data.runs[0]
    s = r.states
    obs = s["dH_obs"].astype(float)
    todo = panels(s)
    if not todo:
        raise ValueError(f"{r.dir}: the diagnosed step holds no prediction of dH_obs")
    terms = [p for p in todo if p[0] != "dH_first"]
    fig, axes = new_figure(len(terms) + (len(todo) > len(terms)), height=3.4, width=3.2)
    for ax, (key, title) in zip(axes, todo):
        _scatter(ax, s[key].astype(float), obs, title, "x" if key == "dH_first" else "o")
    if len(todo) > len(terms):  # the identity panel is drawn smaller
        axes[len(todo) - 1].set_box_aspect(0.6)
    fig.suptitle(f"{r.label}, update at step {r.first_step}: {len(obs)} token states", fontsize=9)
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
