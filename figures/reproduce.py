"""``entropy-mech reproduce --profile quick|full --out DIR``: the paper's whole story from one command.

Runs (or reuses) every experiment of the plan (:mod:`figures.plans`) under ``DIR/runs`` with a
progress bar and a time estimate, draws every figure into ``DIR`` (PNG; PDF too for ``full``), checks
the theorems numerically, and writes ``DIR/report.md`` (:mod:`figures.report`). A killed run resumes
where it stopped: finished runs carry a ``DONE.json`` and are skipped. ``quick`` fits in 10 minutes on 2
CPU cores from an empty model cache (``$ENTROPY_MECH_CACHE``); ``full`` in about 2 hours.

Examples::

    entropy-mech reproduce --profile quick --out reproduce-quick
    entropy-mech reproduce --profile full --out reproduce-full --jobs 4
    entropy-mech reproduce --profile quick --out reproduce-quick --report-only   # redraw from runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech reproduce``."""
    from .plans import PROFILES

    parser.add_argument("--profile", choices=PROFILES, default="quick", help="experiment plan (default quick)")
    parser.add_argument("--out", required=True, help="output directory (runs/, figures, report.md)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one CPU thread each (default 2)")
    parser.add_argument("--report-only", action="store_true", help="skip running; draw from finished runs")
    parser.add_argument("--verify-instances", type=int, default=100, help="instances per theorem check")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def finished_dirs(run_results: list[dict]) -> list[Path]:
    """Directories of the runs that finished (``DONE.json`` present); warm starts excluded."""
    out = []
    for r in run_results:
        d = Path(r["dir"])
        if (d / "DONE.json").is_file() and ((d / "arrays.npz").is_file() or (d / "metrics.jsonl").is_file()):
            out.append(d)
    return out


def reproduce(profile: str, out: str | Path, jobs: int = 2, run: bool = True, progress: bool = True,
              verify_instances: int = 100, specs=None, table1_instances: int = 64) -> dict:
    """Run the plan, draw, verify, write the report. Returns ``{"results", "run_results", "report",
    "wall_s"}``. ``specs`` overrides the profile's plan and ``table1_instances`` sizes the Table 1
    batch (tests)."""
    from theory.verify import run_checks

    from .draw import draw_all
    from .experiments import check_plan, execute, run_dir
    from .fig_covariance import covariance_percentiles
    from .plans import plan
    from .report import write_report

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = plan(profile) if specs is None else specs
    if run:
        run_results = execute(specs, out, jobs=jobs, progress=progress)
    else:
        by_name = check_plan(specs)
        run_results = [{"name": s.name, "ok": (run_dir(s, out, by_name) / "DONE.json").is_file(),
                        "dir": str(run_dir(s, out, by_name))} for s in specs]
    dirs = finished_dirs(run_results)
    results = draw_all(dirs, out, pdf=profile == "full") if dirs else {"skipped": ["all (no finished runs)"]}
    verify_rows = run_checks(verify_instances, seed=0)
    table1 = covariance_percentiles(seed=0, instances=table1_instances)
    wall = time.time() - t0
    report = write_report(out, results, verify_rows=verify_rows, table1=table1, run_results=run_results,
                          profile=profile, wall_s=wall)
    return {"results": results, "run_results": run_results, "report": report, "wall_s": wall}


def run(args: argparse.Namespace) -> int:
    """Reproduce; exit 0 when every run finished, 1 when some failed (the report is written anyway)."""
    if args.jobs < 1:
        print("entropy-mech reproduce: error: --jobs must be >= 1", file=sys.stderr)
        return 2
    res = reproduce(args.profile, args.out, jobs=args.jobs, run=not args.report_only,
                    progress=not args.no_progress, verify_instances=args.verify_instances)
    failed = [r["name"] for r in res["run_results"] if not r.get("ok")]
    print(f"wrote {res['report']} in {res['wall_s'] / 60:.1f} min")
    if failed:
        print(f"{len(failed)} run(s) failed or missing: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
