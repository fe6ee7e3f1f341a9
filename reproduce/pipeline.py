"""The reproduce pipeline: run (or reuse) every experiment of a plan (:mod:`reproduce.plans`) under
``DIR/runs``, draw every figure into ``DIR``, check the theorems numerically and write ``DIR/report.md``
(:mod:`reproduce.report`). ``entropy-mech reproduce`` (:mod:`cli.reproduce`) is its command line.

A killed pipeline resumes where it stopped: finished runs carry a ``DONE.json`` and are skipped.
``quick`` fits in 10 minutes on 2 CPU cores from an empty model cache (``$ENTROPY_MECH_CACHE``);
``full`` in about 2 hours.
"""

from __future__ import annotations

import time
from pathlib import Path

from rundir.finished import is_finished



def reproduce(profile: str, out: str | Path, jobs: int = 2, run: bool = True, progress: bool = True,
              verify_instances: int = 100, specs=None, table1_instances: int = 64,
              tiny: bool = False) -> dict:
    """Run the plan, draw, verify, write the report. Returns ``{"results", "run_results", "report",
    "wall_s"}``; ``results`` is the :class:`figures.results.FigureResults` the report was written from
    (LLM accuracy chosen by :func:`figures.draw.choose_llm_score`). ``specs`` overrides the profile's plan
    and ``table1_instances`` sizes the Table 1 batch (tests). ``tiny``: the gpu profile at toy size on CPU;
    the gpu profile also runs its benchmark steps after the runs (:mod:`reproduce.gpu_steps`, written to
    ``DIR/bench`` and ``DIR/gpu_summary.json``)."""
    from theory.verify import run_checks

    from figures.draw import choose_llm_score, draw_all
    from figures.results import FigureResults
    from .experiments import check_plan, execute, finished_dirs, run_dir
    from figures.fig_covariance import covariance_percentiles
    from .gpu_steps import run_bench_steps
    from .plans import bench_steps, plan
    from .report import write_report

    t0 = time.time()
    out = Path(out).resolve()  # once, at the top: the runs land under it from any working directory
    out.mkdir(parents=True, exist_ok=True)
    specs = plan(profile, tiny) if specs is None else specs
    if run:
        run_results = execute(specs, out, jobs=jobs, progress=progress)
        if bench_steps(profile, tiny):  # gpu profile: timed one at a time, after the runs
            run_bench_steps(bench_steps(profile, tiny), out, specs, progress=progress)
    else:
        by_name = check_plan(specs)
        run_results = [{"name": s.name, "ok": is_finished(run_dir(s, out, by_name)),
                        "dir": str(run_dir(s, out, by_name))} for s in specs]
    dirs = finished_dirs(run_results)
    if dirs:  # LLM accuracy: greedy, or T=0.6 sampled when greedy is saturated (then redrawn, PNG only)
        results = choose_llm_score(draw_all(dirs, out, pdf=profile == "full"), dirs, out)
    else:
        results = FigureResults(skipped=("all (no finished runs)",))
    verify_rows = run_checks(verify_instances, seed=0)
    table1 = covariance_percentiles(seed=0, instances=table1_instances)
    wall = time.time() - t0
    report = write_report(out, results, verify_rows=verify_rows, table1=table1, run_results=run_results,
                          profile=profile, wall_s=wall)
    return {"results": results, "run_results": run_results, "report": report, "wall_s": wall}
