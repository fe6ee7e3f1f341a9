"""Choose, for a set of run directories, which runs each figure draws, and draw them all.

Used by ``entropy-mech figures`` and ``entropy-mech reproduce``. Runs are classified from their
config and ``spec.json`` tags (:mod:`figures.curves`): LLM *baselines* are GRPO runs without entropy or
reference-KL terms; the *main size* is the model size most method runs use. A figure whose runs are
missing is skipped (and listed in :attr:`FigureResults.skipped`), never an error.

:func:`choose_llm_score` then picks the accuracy the LLM results use: the paper's R is greedy accuracy,
but when the GRPO runs start with greedy accuracy >= :data:`GREEDY_SATURATED` it cannot rise, and the
LLM collapse, law, early-prediction and method results are recomputed from T=0.6 sampled accuracy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from . import FIGURES
from .curves import Curves, kind_of, load_curves, load_many
from .fig_collapse import plot_collapse
from .fig_covariance import plot_covariance
from .fig_dynamics import has_diagnostics, plot_dynamics
from .fig_law import plot_law
from .fig_methods import METHOD_ORDER, methods_data, plot_methods
from .fig_prediction import plot_prediction, prediction_data
from .fig_sweeps import SWEEPS, plot_sweep
from .fig_theory import plot_theory
from .results import FigureResults, Score, Variant

GREEDY_SATURATED = 0.9
"""mean greedy validation accuracy at the start of the GRPO runs above which greedy accuracy is saturated
and the LLM results are scored by T=0.6 sampled accuracy instead (:func:`choose_llm_score`)"""
LLM, SIM, T1 = Variant.LLM, Variant.SIM, Variant.T1


class Pick(NamedTuple):
    """One drawing's runs in :func:`select`: a figure of :data:`FIGURES`, its variant, and its part
    (the sweep name for ``sweeps``; ``step`` / ``scatter`` for the two inputs of ``theory``)."""

    figure: str
    variant: Variant = LLM
    part: str = ""

    @property
    def name(self) -> str:
        """The figure's file stem: ``collapse_sim``, ``sweep_kl_cov``, ``theory``…"""
        stem = f"sweep_{self.part}" if self.figure == "sweeps" else self.figure
        return stem + self.variant.suffix


def _plain(c: Curves) -> bool:
    return not c.meta.get("entropy_coef") and not c.meta.get("ref_kl_coef") and c.meta.get("group") != "sweep"


def select(curves: list[Curves]) -> dict[Pick, list[Path]]:
    """Each drawing -> its run directories (see the module docstring); empty lists mean "skip"."""
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
    sel = {Pick("collapse"): base, Pick("collapse", SIM): sim_base, Pick("collapse", T1): base,
           Pick("law"): base, Pick("law", SIM): sim_base, Pick("law", T1): base,
           Pick("prediction"): main_base or base, Pick("prediction", SIM): sim_base,
           Pick("covariance"): (main_base[:1] or base[:1]) + sim_base,
           Pick("methods"): [c for c in methods if same(c)],
           Pick("methods", SIM): [c for c in sim_lm if _plain(c)]}
    for sweep in SWEEPS:
        for variant, pool, bases in ((LLM, llm, main_base[:1]), (SIM, sim_lm, sim_base[:1])):
            runs = [c for c in pool if c.meta.get("sweep") == sweep]
            if sweep in ("clip_cov", "kl_cov"):
                runs += [c for c in pool if c.meta["objective"] == sweep and _plain(c) and c not in runs
                         and (variant is SIM or same(c)) and c.meta.get("seed", 0) == 0]
            sel[Pick("sweeps", variant, sweep)] = bases + runs if runs else []
    diagnosed = {c.path: c for c in main_base + methods if has_diagnostics(c.path)}  # GRPO baseline first
    sel[Pick("dynamics")] = list(diagnosed.values())
    sel[Pick("theory", part="step")] = sim_pg
    sel[Pick("theory", part="scatter")] = sim_base[:1] + (main_base[:1] or base[:1])
    return {k: [c.path for c in v] for k, v in sel.items()}


def draw_all(run_dirs, out: str | Path, pdf: bool = False, only: tuple[str, ...] = FIGURES) -> FigureResults:
    """Draw every figure whose runs exist into ``out``; return their data (and the skipped names)."""
    bad = sorted(set(only) - set(FIGURES))
    if bad:
        raise ValueError(f"unknown figure(s) {bad}; choose from: {', '.join(FIGURES)}")
    curves = [load_curves(d) for d in run_dirs]
    if not curves:
        raise ValueError("no run directories given")
    sel = select(curves)
    out = Path(out)
    skipped: list[str] = []

    def draw(figure, variants, fn, *args, part: str = "", **kw) -> dict:
        """Variant -> ``fn(runs, out / name, *args, pdf=pdf, **kw)`` of each variant with runs."""
        drawn = {}
        for v in variants if figure in only else ():
            pick = Pick(figure, v, part)
            if sel.get(pick):
                drawn[v] = fn(sel[pick], out / pick.name, *args, pdf=pdf, **kw)
            else:
                skipped.append(pick.name)
        return drawn

    collapse = draw("collapse", (LLM, SIM), plot_collapse)
    collapse.update(draw("collapse", (T1,), plot_collapse, val_key="val/acc_t1"))  # R: T=1 sample accuracy
    law = draw("law", (LLM, SIM), plot_law)
    law.update(draw("law", (T1,), plot_law, val_key="val/acc_t1"))
    prediction = draw("prediction", (LLM, SIM), plot_prediction)
    covariance = draw("covariance", (LLM,), plot_covariance).get(LLM)
    dynamics = draw("dynamics", (LLM,), plot_dynamics).get(LLM)
    methods = draw("methods", (LLM, SIM), plot_methods)
    sweeps = {(sweep, v): r for sweep in SWEEPS
              for v, r in draw("sweeps", (LLM, SIM), plot_sweep, sweep, part=sweep).items()}
    theory = None
    if "theory" in only:
        step, scatter = sel[Pick("theory", part="step")], sel[Pick("theory", part="scatter")]
        if step or scatter:
            theory = plot_theory(step, scatter, out / "theory", pdf=pdf)
        else:
            skipped.append("theory")
    return FigureResults(collapse=collapse, law=law, prediction=prediction, covariance=covariance,
                         dynamics=dynamics, methods=methods, sweeps=sweeps, theory=theory,
                         skipped=tuple(skipped))


def choose_llm_score(results: FigureResults, run_dirs, out: str | Path, pdf: bool = False) -> FigureResults:
    """Pick the LLM accuracy the report uses: greedy (``val/acc``, the paper's R) unless the GRPO runs of
    ``results`` start with greedy accuracy >= :data:`GREEDY_SATURATED`, where it cannot rise; then T=0.6
    sampled accuracy (``val/acc_sampled``) of the LLM runs among ``run_dirs``.

    In the sampled case, returns a copy whose ``Variant.LLM`` collapse, law, prediction and methods are
    recomputed from sampled accuracy (collapse and law redrawn as ``collapse_sampled`` /
    ``law_sampled``; prediction and methods not drawn), the greedy ones kept as ``Variant.GREEDY``;
    else ``results`` unchanged."""
    c = results.collapse.get(LLM)
    starts = [r.acc_start for r in c.runs if r.kind == "llm"] if c else []
    if not starts or not float(sum(starts) / len(starts)) >= GREEDY_SATURATED or not run_dirs:
        return results
    key = Score.SAMPLED.value
    llm_dirs = [d for d in run_dirs if kind_of(d) == "llm"]
    try:
        sel = select(load_many(llm_dirs, key))
    except (ValueError, KeyError, OSError):
        return results
    out = Path(out)
    new = {name: dict(getattr(results, name)) for name in ("collapse", "law", "prediction", "methods")}
    for drawn in new.values():
        if LLM in drawn:
            drawn[Variant.GREEDY] = drawn[LLM]
    if sel.get(Pick("collapse")):
        new["collapse"][LLM] = plot_collapse(sel[Pick("collapse")], out / "collapse_sampled", pdf=pdf,
                                             val_key=key)
    if sel.get(Pick("law")):
        new["law"][LLM] = plot_law(sel[Pick("law")], out / "law_sampled", pdf=pdf, val_key=key)
    if sel.get(Pick("prediction")):
        new["prediction"][LLM] = prediction_data(load_many(sel[Pick("prediction")], key))
    if sel.get(Pick("methods")):
        new["methods"][LLM] = methods_data(load_many(sel[Pick("methods")], key))
    return replace(results, **new, llm_score=Score.SAMPLED, greedy_start=sum(starts) / len(starts))
