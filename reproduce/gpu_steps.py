"""Benchmark steps of ``entropy-mech reproduce --profile gpu``, and the ``gpu_summary.json`` they feed.

A :class:`BenchStep` is one run of a ``benchmarks/*.py`` script (``python SCRIPT ARGS --json-out FILE``)
after the plan's runs, in ``<out>/bench/<name>/`` (``log.txt``: its output; ``result.json``: what it
measured, written atomically by the script; ``step.json``: the command). A step whose ``result.json``
records the same command is skipped, so a killed pipeline resumes. ``{model}`` in a step's arguments is
replaced by the model directory of the warm start named by ``needs`` (its ``DONE.json``).

:func:`summarise` reads the results plus the plan's tags into ``<out>/gpu_summary.json``: the model's
non-embedding parameter count, the token fractions of Clip-Cov / KL-Cov with the tokens they select,
and each benchmark's number against its target (``meets``: ``value <= target`` for a cost, ``>=`` for a
speed ratio; ``None`` when not measured).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rundir.files import atomic_write_json
from rundir.finished import read_done
from rundir.ownership import RunLock

from .experiments import MODEL_PLACEHOLDER, Spec, check_plan, run_dir
from .processes import children_die_with_us, run_child

ROOT = Path(__file__).resolve().parents[1]
#: benchmark targets of issue 16: (result key, target, "max" = a cost that must stay below, "min" = a ratio)
TARGETS = {"diagnostics_cost": (("cost_ratio", 1.5, "max"), ("peak_extra_chunks", 2.0, "max")),
           "trainer_throughput": (("e2e_ratio", 1.0, "min"),)}


@dataclass(frozen=True)
class BenchStep:
    """One benchmark script run of the gpu profile."""

    name: str
    """filesystem-safe name (``<out>/bench/<name>/``); also the key of its targets in :data:`TARGETS`"""
    script: str
    """path of the script relative to the repository root (``benchmarks/...py``)"""
    args: tuple[str, ...]
    """its arguments, without ``--json-out`` (added by :func:`run_bench_steps`)"""
    needs: str | None = None
    """name of the ``pretrain`` spec whose model replaces ``{model}`` in ``args``"""
    est_s: float = 60.0
    """estimated wall seconds (stated in the plan's docstring; not used for scheduling)"""

    def __post_init__(self):
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ValueError(f"bench step name must be non-empty without slashes or spaces, "
                             f"got {self.name!r}")
        if "--json-out" in self.args:
            raise ValueError(f"bench step {self.name}: --json-out is added by the runner; "
                             "remove it from args")
        if (MODEL_PLACEHOLDER in self.args) != (self.needs is not None):
            raise ValueError(f"bench step {self.name}: use {MODEL_PLACEHOLDER} in args exactly when "
                             "needs is set")


def _command(step: BenchStep, model: str | None, result: Path) -> list[str]:
    args = [model if a == MODEL_PLACEHOLDER else a for a in step.args]
    return [sys.executable, str(ROOT / step.script), *args, "--json-out", str(result)]


def run_bench_steps(steps: list[BenchStep], out: str | Path, specs: list[Spec],
                    progress: bool = True) -> dict:
    """Run every step not already done (in order, one at a time: they time the device), then write
    ``<out>/gpu_summary.json`` (:func:`summarise`). Returns the summary.

    Args:
      steps: the benchmark steps (:func:`reproduce.plans.bench_steps`); specs: the plan they follow (its
        warm starts supply ``{model}``; its tags the summary's model and token-fraction facts).
    """
    out = Path(out).resolve()
    by_name = check_plan(specs)
    for s in steps:
        if s.needs is not None and (s.needs not in by_name or by_name[s.needs].kind != "pretrain"):
            raise ValueError(f"bench step {s.name} needs {s.needs!r}, which is not a pretrain spec "
                             "of the plan")
    results = {}
    with RunLock(out), children_die_with_us():
        for s in steps:
            results[s.name] = _run_step(s, out, by_name, progress)
    summary = summarise(results, specs, out)
    atomic_write_json(out / "gpu_summary.json", summary)
    return summary


def _run_step(step: BenchStep, out: Path, by_name: dict, progress: bool) -> dict:
    d = out / "bench" / step.name
    result = d / "result.json"
    model = None
    if step.needs is not None:
        done = read_done(run_dir(by_name[step.needs], out, by_name)) or {}
        if "model" not in done:
            return {"ok": False, "error": f"warm start {step.needs} did not finish"}
        model = done["model"]
    cmd = _command(step, model, result)
    if result.is_file():
        prev = json.loads(result.read_text())
        if prev.get("_command") == cmd[1:]:
            return {"ok": True, "skipped": True, "result": prev}
    d.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    atomic_write_json(d / "step.json", {"name": step.name, "command": cmd[1:]})
    if progress:
        print(f"bench step {step.name}: {' '.join(cmd[1:])}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    t0 = time.time()
    with open(d / "log.txt", "w") as log:
        proc = run_child(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    wall = time.time() - t0
    if proc.returncode != 0 or not result.is_file():
        return {"ok": False, "error": f"exit {proc.returncode}; see {d / 'log.txt'}", "wall_s": wall}
    res = {**json.loads(result.read_text()), "_command": cmd[1:], "_wall_s": wall}
    atomic_write_json(result, res)
    return {"ok": True, "skipped": False, "result": res}


def grade(value, target: float, kind: str) -> bool | None:
    """``value <= target`` for ``kind="max"`` (a cost), ``value >= target`` for ``"min"`` (a ratio);
    ``None`` when ``value`` is missing (not measured)."""
    if kind not in ("max", "min"):
        raise ValueError(f"kind must be 'max' or 'min', got {kind!r}")
    if value is None:
        return None
    if not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"value must be a number or None, got {value!r}")
    return bool(value <= target) if kind == "max" else bool(value >= target)


def summarise(results: dict[str, dict], specs: list[Spec], out: str | Path | None = None) -> dict:
    """The content of ``gpu_summary.json``: per benchmark its status, measured numbers and target checks
    (:data:`TARGETS`, graded by :func:`grade`), plus the plan's model and token-fraction tags and the runs'
    wall times (from ``DONE.json`` under ``out`` when given)."""
    bench = {}
    for name, r in results.items():
        res = r.get("result") or {}
        entry = {"ok": bool(r.get("ok")), **({"error": r["error"]} if "error" in r else {}),
                 "result": {k: v for k, v in res.items() if not k.startswith("_")},
                 "wall_s": res.get("_wall_s", r.get("wall_s"))}
        entry["checks"] = [{"metric": key, "value": res.get(key), "target": target,
                            "kind": "<=" if kind == "max" else ">=",
                            "meets": grade(res.get(key), target, kind)}
                           for key, target, kind in TARGETS.get(name, ())]
        bench[name] = entry
    facts = {s.name: s.tags for s in specs if s.tags.get("profile") == "gpu"}
    runs = {}
    if out is not None:
        by_name = check_plan(specs)
        for s in specs:
            done = read_done(run_dir(s, out, by_name))
            runs[s.name] = None if done is None else round(float(done.get("wall_s", 0.0)), 1)
    return {"benchmarks": bench, "plan": facts, "run_wall_s": runs}
