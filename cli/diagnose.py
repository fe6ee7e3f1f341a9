"""``entropy-mech diagnose RUN_DIR``: the per-run summary of the entropy-dynamics diagnostics.

Example::

    entropy-mech train --task arithmetic --objective grpo --diagnose-every 5 --out runs/grpo
    entropy-mech diagnose runs/grpo            # tables; --json for machine-readable output

The decomposition table splits each probed state's linearised entropy change into the part produced by
its own samples, by the other tokens of the mini-batch (cross) and by optimizer history, and grades the
theorems' predictions against the observed change (docs/theory.md §1.17; llm_rl/diagnostics.py).
``--json`` prints, per run directory, ``{"run": summary, "steps": [...]}`` with the same numbers, keyed by
term: own, cross, history, linearised, theorem, theorem2 (NaN written as null).
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech diagnose``."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories of `entropy-mech train`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


ROWS = (
    ("diagnosed_steps", "diagnosed optimizer steps"),
    ("median_r2_first", "median per-step R² (Lemma 1 on measured Δz: identity)"),
    ("median_r2_second", "median per-step R² (second order: identity)"),
    ("median_rel_err_first", "median |obs − Lemma 1| / |obs|"),
    ("median_sign_acc_first", "median sign accuracy (Lemma 1: identity)"),
    ("pooled_r2_first", "R² over all stored states (Lemma 1: identity)"),
    ("pooled_r2_second", "R² over all stored states (second order)"),
    ("median_r2_thm1", "median per-step R² (Theorem 1)"),
    ("median_sign_acc_thm1", "median per-step sign accuracy (Theorem 1)"),
    ("median_recon_err", "median ‖affine step − step taken‖ / ‖step‖"),
)
TERM_LABELS = (("own", "own samples"), ("cross", "other tokens (cross)"), ("history", "optimizer history"),
               ("linearised", "linearised (sum)"), ("theorem", "Theorem 1"), ("theorem2", "Theorem 2"))


def _ci(v) -> str:
    return f"[{v[0]:.2f}, {v[1]:.2f}]" if v and all(math.isfinite(x) for x in v) else "[n/a]"


def _print_decomposition(d: dict) -> None:
    print(f"  decomposition over {d['states']} states of {d['steps']} steps "
          f"(Theorem 1 eta: {d['theorem']['eta_source']})")
    print(f"    {'term':<22} {'share':>7} {'R²':>8} {'95% CI':>15} {'sign acc':>9} {'95% CI':>13}")
    for key, label in TERM_LABELS:
        t = d[key]
        share = f"{t['share']:.1%}" if "share" in t else ""
        print(f"    {label:<22} {share:>7} {t['r2']:>8.3f} {_ci(t['r2_ci']):>15} {t['sign_acc']:>9.1%} "
              f"{_ci(t['sign_acc_ci']):>13}")


def _print_steps(steps: list[dict]) -> None:
    if not any("own" in s for s in steps):
        return
    print(f"    {'step':>5} {'ΣΔH obs':>10} {'Σ lin':>10} {'Σ own':>10} {'Σ cross':>10} {'Σ hist':>10} "
          f"{'own':>6} {'R² thm1':>8}")
    for s in steps:
        if "own" not in s:
            continue
        print(f"    {s['step']:>5} {s['observed']['sum']:>10.2e} {s['linearised']['sum']:>10.2e} "
              f"{s['own']['sum']:>10.2e} {s['cross']['sum']:>10.2e} {s['history']['sum']:>10.2e} "
              f"{s['own']['share']:>6.1%} {s['theorem']['r2']:>8.3f}")


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def run(args) -> int:
    """Print the summary of each run; exit 2 if a directory is not a diagnosed run."""
    from llm_rl.diagnostics_summary import diagnosed_records, per_step_terms, summarize_run

    results = {}
    for run_dir in args.run_dirs:
        try:
            records = diagnosed_records(run_dir)  # read once for both summaries
            results[run_dir] = {"run": summarize_run(run_dir, records), "steps": per_step_terms(records)}
        except ValueError as err:
            print(f"entropy-mech diagnose: error: {err}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(_nan_to_none(results), indent=2, allow_nan=False))
        return 0
    for run_dir, res in results.items():
        summary = res["run"]
        print(f"== {run_dir}")
        for key, label in ROWS:
            if key in summary:
                print(f"  {label:<56} {summary[key]:>12.4g}")
        if "decomposition" in summary:
            _print_decomposition(summary["decomposition"])
            _print_steps(res["steps"])
        else:
            print("  (no entropy-change decomposition: the run was diagnosed before it existed)")
    return 0
