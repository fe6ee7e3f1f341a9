"""The experiment plan as data, and a resumable runner for it.

A :class:`Spec` is one ``entropy-mech`` invocation (``simulate``, ``pretrain`` or ``train``) with its
arguments and tags saying which figure uses it. Each spec runs in ``<out>/runs/<name>-<hash>`` where the
hash covers the subcommand, its arguments, the task's default knobs and the hash of the warm start it
depends on; a finished run leaves ``DONE.json`` there. :func:`execute` skips every spec whose directory
already holds a matching ``DONE.json`` and restarts unfinished ones from scratch, so a killed
``entropy-mech reproduce`` resumes where it stopped (at run granularity). Runs are subprocesses of the
``entropy-mech`` CLI with one torch thread each, ``jobs`` at a time (warm starts and simulator runs first,
then the LLM trainings), under a tqdm bar whose total is the estimated seconds of work.

The plans themselves (``quick`` and ``full``) live in :mod:`reproduce.plans`.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rundir.files import atomic_write_json
from rundir.finished import has_records, is_finished, mark_finished, read_done
from rundir.ownership import RunLock

from .processes import children_die_with_us, kill_children, run_child

KINDS = ("simulate", "pretrain", "train")
MODEL_PLACEHOLDER = "{model}"
"""in a ``train`` spec's args, replaced by the directory of the warm start named by ``needs``"""


@dataclass(frozen=True)
class Spec:
    """One run of the plan."""

    name: str
    """unique, filesystem-safe name (also the run-directory prefix)"""
    kind: str
    """``simulate``, ``pretrain`` or ``train`` (the entropy-mech subcommand)"""
    args: tuple[str, ...]
    """CLI arguments, without ``--out`` (added by the runner)"""
    needs: str | None = None
    """name of the ``pretrain`` spec whose model replaces ``{model}`` in ``args``"""
    tags: dict = field(default_factory=dict)
    """labels read by the figures (group, size, seed...); stored in ``spec.json``; not hashed"""
    est_s: float = 10.0
    """estimated wall seconds on one core (progress bar and time estimate only)"""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown spec kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ValueError(f"spec name must be non-empty without slashes or spaces, got {self.name!r}")
        if "--out" in self.args:
            raise ValueError(f"spec {self.name}: --out is added by the runner; remove it from args")
        if (MODEL_PLACEHOLDER in self.args) != (self.needs is not None):
            raise ValueError(f"spec {self.name}: use {MODEL_PLACEHOLDER} in args exactly when needs is set")

    def command(self, model: str | None = None) -> list[str]:
        """The ``entropy-mech`` argv (without ``--out``), with the warm-start path filled in."""
        args = [model if a == MODEL_PLACEHOLDER else a for a in self.args]
        if MODEL_PLACEHOLDER in self.args and model is None:
            raise ValueError(f"spec {self.name} needs the model of {self.needs}")
        return [self.kind, *args]


def _task_defaults(args: tuple) -> dict:
    """The default knobs of the spec's ``--task`` ({} without one), so that a changed task default (not
    visible in the arguments) changes the hash instead of reusing finished runs made with the old one."""
    if "--task" not in args or args.index("--task") + 1 >= len(args):
        return {}
    from llm_rl.tasks import make_task

    try:
        return make_task(args[args.index("--task") + 1]).knobs()
    except (ValueError, TypeError):  # a task that needs knobs (prompt files): its knobs are in the args
        return {}


def spec_hash(spec: Spec, by_name: dict[str, Spec]) -> str:
    """12 hex digits of sha256 over kind, args, the task's default knobs and (recursively) the hash of the
    needed warm start."""
    dep = spec_hash(by_name[spec.needs], by_name) if spec.needs else ""
    blob = json.dumps([spec.kind, list(spec.args), dep, _task_defaults(spec.args)], sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def check_plan(specs: list[Spec]) -> dict[str, Spec]:
    """Name -> spec, after checking names are unique and every ``needs`` names a ``pretrain`` spec."""
    by_name: dict[str, Spec] = {}
    for s in specs:
        if s.name in by_name:
            raise ValueError(f"duplicate spec name {s.name!r}")
        by_name[s.name] = s
    for s in specs:
        if s.needs is not None and (s.needs not in by_name or by_name[s.needs].kind != "pretrain"):
            raise ValueError(f"spec {s.name} needs {s.needs!r}, which is not a pretrain spec of the plan")
    return by_name


def run_dir(spec: Spec, out: str | Path, by_name: dict[str, Spec]) -> Path:
    """``<out>/runs/<name>-<hash>``."""
    return Path(out) / "runs" / f"{spec.name}-{spec_hash(spec, by_name)}"


def is_done(spec: Spec, out: str | Path, by_name: dict[str, Spec]) -> bool:
    """True when the run directory holds a ``DONE.json`` with this spec's hash (and, for a warm start,
    its cached model still exists)."""
    d = run_dir(spec, out, by_name)
    done = read_done(d)
    if done is None or done.get("hash") != spec_hash(spec, by_name):
        return False
    return spec.kind != "pretrain" or Path(done.get("model", "")).joinpath("config.json").is_file()


def _model_of(spec: Spec, out, by_name) -> str | None:
    if spec.needs is None:
        return None
    done = read_done(run_dir(by_name[spec.needs], out, by_name)) or {}
    return done["model"]


def run_spec(spec: Spec, out: str | Path, by_name: dict[str, Spec], cli: list[str] | None = None) -> dict:
    """Run one spec in a fresh run directory (an unfinished one is wiped first); write ``DONE.json``.

    Args:
      cli: the command prefix (default ``[python, -m, cli.main]``, i.e. ``entropy-mech``).
    Returns:
      ``{"name", "ok", "wall_s", "dir", "log"}``; a failing run is reported, not raised.
    """
    out = Path(out).resolve()
    d = run_dir(spec, out, by_name)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    atomic_write_json(d / "spec.json", {"name": spec.name, "kind": spec.kind, "args": list(spec.args),
                                        "needs": spec.needs, "tags": spec.tags})
    argv = spec.command(_model_of(spec, out, by_name))
    if spec.kind != "pretrain":
        argv += ["--out", str(d)]
    argv += ["--threads", "1"] if spec.kind == "simulate" else []
    argv += ["--no-progress"]
    cmd = (cli or [sys.executable, "-m", "cli.main"]) + argv
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    t0 = time.time()
    with open(d / "log.txt", "w") as log:
        log.write("$ entropy-mech " + " ".join(argv) + "\n")
        log.flush()
        proc = run_child(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
        log.write(proc.stdout)
    wall = time.time() - t0
    ok = proc.returncode == 0
    if ok:
        done = {"hash": spec_hash(spec, by_name), "wall_s": wall, "command": "entropy-mech " + " ".join(argv)}
        if spec.kind == "pretrain":
            info = json.loads(proc.stdout[proc.stdout.index("{"):])
            done.update(model=info["model"], val=info["val"])
        mark_finished(d, done)
    return {"name": spec.name, "ok": ok, "wall_s": wall, "dir": str(d), "log": str(d / "log.txt")}


def execute(specs: list[Spec], out: str | Path, jobs: int = 2, progress: bool = True,
            cli: list[str] | None = None) -> list[dict]:
    """Run every unfinished spec (warm starts first), ``jobs`` in parallel; return one result per spec.

    Finished specs are reported with ``"skipped": True``. A spec whose warm start failed is not run.
    ``out`` is resolved to an absolute path first, so the runs land there whatever the working directory;
    ``out/.lock`` stops a second live runner on the same folder (:class:`rundir.ownership.RunLock`), and
    no run outlives this call (:mod:`reproduce.processes`).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out = Path(out).resolve()
    by_name = check_plan(specs)
    with RunLock(out), children_die_with_us():
        return _execute(specs, out, by_name, jobs, progress, cli)


def _execute(specs, out: Path, by_name, jobs: int, progress: bool, cli) -> list[dict]:
    from tqdm.auto import tqdm

    results = {s.name: {"name": s.name, "ok": True, "skipped": True, "wall_s": 0.0,
                        "dir": str(run_dir(s, out, by_name))} for s in specs if is_done(s, out, by_name)}
    todo = [s for s in specs if s.name not in results]
    est = sum(s.est_s for s in todo) / jobs
    bar = tqdm(total=round(est), unit="s", desc=f"reproduce: {len(todo)} runs (est. {est / 60:.1f} min)",
               disable=not progress or not todo, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} est-s "
               "[{elapsed}<{remaining}]")
    # warm starts first, with the simulator runs filling the cores they leave idle; then the LLM trainings
    for phase in (("pretrain", "simulate"), ("train",)):
        batch = sorted((s for s in todo if s.kind in phase), key=lambda s: s.kind != "pretrain")
        with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {}
            for s in batch:
                if s.needs and not results.get(s.needs, {}).get("ok"):
                    results[s.name] = {"name": s.name, "ok": False, "wall_s": 0.0, "skipped": False,
                                       "dir": str(run_dir(s, out, by_name)), "error": f"{s.needs} failed"}
                    continue
                futures[pool.submit(run_spec, s, out, by_name, cli)] = s
            try:
                for fut in cf.as_completed(futures):
                    s = futures[fut]
                    res = fut.result()
                    res["skipped"] = False
                    results[s.name] = res
                    bar.update(min(round(s.est_s / jobs), bar.total - bar.n))
                    if not res["ok"]:
                        bar.write(f"run {s.name} failed; see {res['log']}")
            except BaseException:  # Ctrl-C, SIGTERM, an error: stop the runs before the pool waits for them
                pool.shutdown(wait=False, cancel_futures=True)
                kill_children()
                raise
    bar.close()
    return [results[s.name] for s in specs]


def finished_dirs(run_results: list[dict]) -> list[Path]:
    """Directories of the runs that finished (``DONE.json`` present); warm starts excluded."""
    dirs = (Path(r["dir"]) for r in run_results)
    return [d for d in dirs if is_finished(d) and has_records(d)]
