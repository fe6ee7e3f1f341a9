"""``entropy-mech reproduce --profile quick|full --out DIR``: the paper's whole story from one command.

Runs (or reuses) every experiment of the plan (:mod:`reproduce.plans`) under ``DIR/runs`` with a
progress bar and a time estimate, draws every figure into ``DIR`` (PNG; PDF too for ``full``), checks
the theorems numerically, and writes ``DIR/report.md`` (:mod:`reproduce.report`). A killed run resumes
where it stopped: finished runs carry a ``DONE.json`` and are skipped. ``quick`` fits in 10 minutes on 2
CPU cores from an empty model cache (``$ENTROPY_MECH_CACHE``); ``full`` in about 2 hours.

Examples::

    entropy-mech reproduce --profile quick --out reproduce-quick
    entropy-mech reproduce --profile full --out reproduce-full --jobs 4
    entropy-mech reproduce --profile quick --out reproduce-quick --report-only   # redraw from runs
    entropy-mech reproduce --profile gpu --out reproduce-gpu --jobs 3   # one GPU, <= 8 min
    entropy-mech reproduce --profile gpu --tiny --out reproduce-gpu-tiny   # the same steps, toy size, CPU
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech reproduce``."""
    from reproduce.plans import PROFILES  # torch-free

    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="experiment plan (default quick)")
    parser.add_argument("--out", required=True, help="output directory (runs/, figures, report.md)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs in parallel, one CPU thread each (default 2)")
    parser.add_argument("--report-only", action="store_true", help="skip running; draw from finished runs")
    parser.add_argument("--verify-instances", type=int, default=100, help="instances per theorem check")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--tiny", action="store_true",
                        help="with --profile gpu: the same steps at toy size on CPU (<= 5 min on 2 cores)")


def run(args: argparse.Namespace) -> int:
    """Reproduce; exit 0 when every run finished, 1 when some failed (the report is written anyway)."""
    if args.jobs < 1:
        print("entropy-mech reproduce: error: --jobs must be >= 1", file=sys.stderr)
        return 2
    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"entropy-mech reproduce: error: --out {args.out} is a file, not a folder", file=sys.stderr)
        return 2
    if args.tiny and args.profile != "gpu":
        print("entropy-mech reproduce: error: --tiny applies only to --profile gpu", file=sys.stderr)
        return 2
    from reproduce.pipeline import reproduce
    from rundir.ownership import RunDirError

    try:
        res = reproduce(args.profile, args.out, jobs=args.jobs, run=not args.report_only,
                        progress=not args.no_progress, verify_instances=args.verify_instances,
                        tiny=args.tiny)
    except RunDirError as err:  # another live reproduce writes in --out
        print(f"entropy-mech reproduce: error: {err}", file=sys.stderr)
        return 2
    failed = [r["name"] for r in res["run_results"] if not r.get("ok")]
    print(f"wrote {res['report']} in {res['wall_s'] / 60:.1f} min")
    if failed:
        print(f"{len(failed)} run(s) failed or missing: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
