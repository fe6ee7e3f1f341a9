"""Choose, for a set of run directories, which runs each figure draws, and draw them all.

Used by ``entropy-mech figures`` and ``entropy-mech reproduce``. Runs are classified from their
config and ``spec.json`` tags (:mod:`figures.curves`): LLM *baselines* are GRPO runs without entropy or
reference-KL terms; the *main size* is the model size most method runs use. A figure whose runs are
missing is skipped (and listed under ``skipped``), never an error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .fig_collapse import plot_collapse
from .fig_covariance import plot_covariance
from .fig_dynamics import has_diagnostics, plot_dynamics
from .fig_law import plot_law
from .fig_methods import METHOD_ORDER, plot_methods
from .fig_prediction import plot_prediction
from .fig_sweeps import SWEEPS, plot_sweep
from .fig_theory import plot_theory
from .curves import Curves, load_curves

FIGURES = ("collapse", "law", "prediction", "covariance", "dynamics", "methods", "sweeps", "theory")


def _plain(c: Curves) -> bool:
    return not c.meta.get("entropy_coef") and not c.meta.get("ref_kl_coef") and c.meta.get("group") != "sweep"


def select(curves: list[Curves]) -> dict[str, list[Path]]:
    """Figure name -> run directories (see the module docstring); empty lists mean "skip"."""
    llm = [c for c in curves if c.kind == "llm"]
    sim_lm = [c for c in curves if c.kind == "sim" and c.meta.get("rule") == "grpo"]
    sim_pg = [c for c in curves if c.kind == "sim" and c.meta.get("rule") in ("pg", "npg")]
    base = [c for c in llm if c.meta["objective"] == "grpo" and _plain(c)]
    methods = [c for c in llm if c.meta["objective"] in METHOD_ORDER and _plain(c)]
    sizes = Counter(c.meta.get("size_name") or c.meta.get("size") for c in methods)
    main = sizes.most_common(1)[0][0] if sizes else None
    same = lambda c: (c.meta.get("size_name") or c.meta.get("size")) == main  # noqa: E731
    main_base = [c for c in base if same(c)]
    sim_base = [c for c in sim_lm if c.meta["objective"] == "grpo"]
    sel = {"collapse": base, "collapse_sim": sim_base, "collapse_t1": base, "law": base, "law_sim": sim_base,
           "law_t1": base,
           "prediction": main_base or base, "prediction_sim": sim_base,
           "covariance": (main_base[:1] or base[:1]) + sim_base,
           "methods": [c for c in methods if same(c)], "methods_sim": [c for c in sim_lm if _plain(c)]}
    for sweep in SWEEPS:
        for tag, pool, bases in (("", llm, main_base[:1]), ("_sim", sim_lm, sim_base[:1])):
            runs = [c for c in pool if c.meta.get("sweep") == sweep]
            if sweep in ("clip_cov", "kl_cov"):
                runs += [c for c in pool if c.meta["objective"] == sweep and _plain(c) and c not in runs
                         and (tag or same(c)) and c.meta.get("seed", 0) == 0]
            sel[f"sweep_{sweep}{tag}"] = bases + runs if runs else []
    diagnosed = {c.path: c for c in main_base + methods if has_diagnostics(c.path)}  # GRPO baseline first
    sel["dynamics"] = list(diagnosed.values())
    sel["theory_step"] = sim_pg
    sel["theory_scatter"] = sim_base[:1] + (main_base[:1] or base[:1])
    return {k: [c.path for c in v] for k, v in sel.items()}


def draw_all(run_dirs, out: str | Path, pdf: bool = False, only: tuple[str, ...] = FIGURES) -> dict:
    """Draw every figure whose runs exist into ``out``; return name -> data (plus ``skipped``)."""
    bad = sorted(set(only) - set(FIGURES))
    if bad:
        raise ValueError(f"unknown figure(s) {bad}; choose from: {', '.join(FIGURES)}")
    curves = [load_curves(d) for d in run_dirs]
    if not curves:
        raise ValueError("no run directories given")
    sel = select(curves)
    out = Path(out)
    results: dict = {"skipped": []}

    def draw(name, fn, *args, **kw):
        figure = name.split("_")[0]
        if figure not in only:
            return
        runs = sel.get(name, [])
        if not runs:
            results["skipped"].append(name)
            return
        results[name] = fn(runs, out / name, *args, pdf=pdf, **kw)

    for name in ("collapse", "collapse_sim"):
        draw(name, plot_collapse)
    draw("collapse_t1", plot_collapse, val_key="val/acc_t1")  # R = accuracy of T=1 samples
    for name in ("law", "law_sim"):
        draw(name, plot_law)
    draw("law_t1", plot_law, val_key="val/acc_t1")
    for name in ("prediction", "prediction_sim"):
        draw(name, plot_prediction)
    draw("covariance", plot_covariance)
    draw("dynamics", plot_dynamics)
    for name in ("methods", "methods_sim"):
        draw(name, plot_methods)
    for sweep in SWEEPS:
        for tag in ("", "_sim"):
            name = f"sweep_{sweep}{tag}"
            if "sweeps" in only and sel.get(name):
                results[name] = plot_sweep(sel[name], out / name, sweep, pdf=pdf)
            elif "sweeps" in only:
                results["skipped"].append(name)
    if "theory" in only:
        if sel["theory_step"] or sel["theory_scatter"]:
            results["theory"] = plot_theory(sel["theory_step"], sel["theory_scatter"], out / "theory", pdf=pdf)
        else:
            results["skipped"].append("theory")
    return results
