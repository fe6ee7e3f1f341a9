"""The per-run summary of the entropy-dynamics diagnostics (``entropy-mech diagnose RUN_DIR``).

:func:`summarize_run` reads a run's ``metrics.jsonl`` (per-step ``diag/*``) and its per-state arrays
(``RUN/diagnostics/step_*.npz``) and returns the medians of the per-step values plus, for runs diagnosed
with the decomposition (docs/theory.md §1.17), the pooled per-state statistics of every term:

* ``share`` of own / cross / history: Σ_s |ΔH_term(s)| / Σ_s (|ΔH_own| + |ΔH_cross| + |ΔH_hist|);
* ``r2`` = 1 − Σ(obs − pred)² / Σ(obs − mean obs)² and ``sign_acc`` = mean[sign(pred) = sign(obs)] of each
  term and of the theorem predictions against the observed ΔH, pooled over every diagnosed state;
* 95% bootstrap intervals over states (``ci``: 2.5th / 97.5th percentiles of :data:`BOOTSTRAP` resamples,
  seeded, so the same run gives the same numbers); every estimator is :mod:`theory.agreement`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rundir.diagnostics_files import load_per_state
from rundir.records import read_records

from theory.agreement import agreement, r2

__all__ = ["BOOTSTRAP", "STEP_KEYS", "TERMS", "diagnosed_records", "per_step_terms", "summarize_run"]

#: bootstrap resamples of the per-run intervals
BOOTSTRAP = 1000
#: per-run term name -> per-state array (the keys of ``summarize_run(...)["decomposition"]``)
TERMS = {"own": "dH_own", "cross": "dH_cross", "history": "dH_hist", "linearised": "dH_lin",
         "theorem": "dH_thm1", "theorem2": "dH_thm2"}


def _term_stats(obs, pred, *, share_of=None, corr: bool = False, seed: int = 0) -> dict:
    a = agreement(obs, pred, n_boot=BOOTSTRAP, seed=seed)
    out = {"r2": a.r2, "r2_ci": list(a.r2_ci), "sign_acc": a.sign_acc, "sign_acc_ci": list(a.sign_acc_ci)}
    if share_of is not None:
        out["share"] = float(np.abs(pred).sum() / share_of) if share_of > 0 else float("nan")
    if corr:
        out["corr"], out["corr_ci"] = a.corr, list(a.corr_ci)
    return out


def _decomposition(states: dict, rows: list[dict]) -> dict | None:
    """The pooled per-state statistics of every term (module docstring); None without a decomposition."""
    steps = [s for s in states.values() if "dH_own" in s]
    if not steps:
        return None
    cat = {k: np.concatenate([s[k] for s in steps]).astype(float) for k in ("dH_obs", *TERMS.values())}
    obs = cat["dH_obs"]
    total = float(sum(np.abs(cat[TERMS[t]]).sum() for t in ("own", "cross", "history")))
    out: dict = {"steps": len(steps), "states": int(obs.size)}
    for i, (term, key) in enumerate(TERMS.items()):
        pred = cat[key]
        if term in ("own", "cross", "history"):
            out[term] = _term_stats(obs, pred, share_of=total, seed=i)
        elif term == "linearised":
            out[term] = _term_stats(obs, pred, seed=i)
        else:
            out[term] = {"rule": "theorem1" if term == "theorem" else "theorem2",
                         **_term_stats(obs, pred, corr=True, seed=i)}
    sgd = any(r.get("diag/eta_thm1_from_lr") == 1.0 for r in rows)
    out["theorem"]["eta_source"] = "optimizer lr (SGD)" if sgd else "fitted per step, eta >= 0"
    out["theorem2"]["eta_source"] = "fitted per step, eta >= 0"
    return out


def diagnosed_records(run_dir) -> list[dict]:
    """The ``metrics.jsonl`` records of a run's diagnosed steps (those with ``diag/states``).

    Raises:
      ValueError: ``run_dir`` has no ``metrics.jsonl`` or no diagnosed step.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise ValueError(f"{run_dir} has no metrics.jsonl: not a run directory of `entropy-mech train`")
    rows = [r for r in read_records(path) if "diag/states" in r]
    if not rows:
        raise ValueError(f"{run_dir} has no diagnosed steps: train with --diagnose-every K")
    return rows


def summarize_run(run_dir, records: list[dict] | None = None) -> dict:
    """Per-run summary over every diagnosed step: medians of the per-step ``diag/*`` values (Lemma 1 on
    the measured logit change is an identity check: ``median_r2_first``), pooled R² of the Lemma-1 and
    second-order predictions over all stored states, and ``decomposition`` (module docstring) when the
    run was diagnosed with it. ``records``: the run's :func:`diagnosed_records`, when already read.

    Raises:
      ValueError: ``run_dir`` has no ``metrics.jsonl`` or no diagnosed step.
    """
    rows = diagnosed_records(run_dir) if records is None else records

    def med(key):
        vals = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
        vals = vals[np.isfinite(vals)]
        return float(np.median(vals)) if vals.size else float("nan")

    out: dict = {"diagnosed_steps": float(len(rows))}
    for key in ("rel_err_first", "rel_err_second", "r2_first", "r2_second", "sign_acc_first", "r2_thm1",
                "sign_acc_thm1", "corr_thm1", "share_own", "share_cross", "share_hist", "recon_err",
                "sum_gap"):
        if any(f"diag/{key}" in r for r in rows):
            out[f"median_{key}"] = med(f"diag/{key}")
    states = load_per_state(run_dir)
    if states:
        obs = np.concatenate([s["dH_obs"] for s in states.values()]).astype(float)
        for name in ("dH_first", "dH_second"):
            pred = np.concatenate([s[name] for s in states.values()]).astype(float)
            out[f"pooled_r2_{name[3:]}"] = r2(obs, pred)
        decomposition = _decomposition(states, rows)
        if decomposition is not None:
            out["decomposition"] = decomposition
    return out


#: per-step ``diag/*`` keys of each term, for :func:`per_step_terms` (JSON names: the terms')
STEP_KEYS = {
    "observed": {"sum": "diag/dH_obs_sum"},
    "own": {"sum": "diag/dH_own_sum", "share": "diag/share_own", "r2": "diag/r2_own",
            "sign_acc": "diag/sign_acc_own"},
    "cross": {"sum": "diag/dH_cross_sum", "share": "diag/share_cross"},
    "history": {"sum": "diag/dH_hist_sum", "share": "diag/share_hist"},
    "linearised": {"sum": "diag/dH_lin_sum", "r2": "diag/r2_lin", "sign_acc": "diag/sign_acc_lin"},
    "theorem": {"eta": "diag/eta_thm1", "r2": "diag/r2_thm1", "sign_acc": "diag/sign_acc_thm1",
                "corr": "diag/corr_thm1"},
    "theorem2": {"eta": "diag/eta_thm2", "r2": "diag/r2_thm2", "sign_acc": "diag/sign_acc_thm2",
                 "corr": "diag/corr_thm2"},
    "closure": {"recon_err": "diag/recon_err", "sum_gap": "diag/sum_gap"},
}


def per_step_terms(records: list[dict]) -> list[dict]:
    """Every diagnosed step of a run (its :func:`diagnosed_records`) as ``{"step": k, "states": S, term:
    {field: value}}`` with the terms of :data:`STEP_KEYS` (observed, own, cross, history, linearised,
    theorem, theorem2, closure); a term the step did not record (no decomposition) is absent."""
    out = []
    for r in records:
        row: dict = {"step": int(r["step"]), "states": int(r["diag/states"])}
        for term, fields in STEP_KEYS.items():
            vals = {f: r[k] for f, k in fields.items() if k in r}
            if vals:
                row[term] = {f: (float("nan") if v is None else float(v)) for f, v in vals.items()}
        out.append(row)
    return out
