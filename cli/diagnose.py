"""``entropy-mech diagnose RUN_DIR``: the per-run summary of the entropy-dynamics diagnostics.

Example::

    entropy-mech train --task arithmetic --objective grpo --diagnose-every 5 --out runs/grpo
    entropy-mech diagnose runs/grpo            # table; --json for machine-readable output
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech diagnose``."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories of `entropy-mech train`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


ROWS = (
    ("diagnosed_steps", "diagnosed optimizer steps"),
    ("median_rel_err_first", "median |obs − Lemma 1| / |obs|"),
    ("median_rel_err_second", "median |obs − second order| / |obs|"),
    ("median_r2_first", "median per-step R² (Lemma 1)"),
    ("median_r2_second", "median per-step R² (second order)"),
    ("median_r2_tab", "median per-step R² (tabular, η_eff fitted)"),
    ("median_corr_tab", "median corr(tabular, obs)"),
    ("median_sign_acc_first", "median sign accuracy (Lemma 1)"),
    ("median_sign_acc_tab", "median sign accuracy (tabular)"),
    ("pooled_r2_first", "R² over all stored states (Lemma 1)"),
    ("pooled_r2_second", "R² over all stored states (second order)"),
    ("pooled_r2_tab", "R² over all stored states (tabular)"),
    ("eta_eff_first", "η_eff at the first diagnosed step"),
    ("eta_eff_last", "η_eff at the last diagnosed step"),
)


def run(args) -> int:
    """Print the summary of each run; exit 2 if a directory is not a diagnosed run."""
    from llm_rl.diagnostics import summarize_run

    results = {}
    for run_dir in args.run_dirs:
        try:
            results[run_dir] = summarize_run(run_dir)
        except ValueError as err:
            print(f"entropy-mech diagnose: error: {err}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for run_dir, summary in results.items():
        print(f"== {run_dir}")
        for key, label in ROWS:
            if key in summary:
                print(f"  {label:<44} {summary[key]:>12.4g}")
    return 0
