"""R vs H with the fitted law R = −a·exp(H) + b per model size, and the coefficients vs size
(Cui et al. 2025, Eq. 6; Fig. 1 right, Fig. 3, Fig. 7; paper §2.2, §2.5; docs/theory.md §1.15).

Runs are grouped by ``meta["size"]`` (non-embedding parameters) when present, else by label; each
group's (H, R) points at the validation steps are pooled and fitted with
``theory.law.fit_entropy_law`` (bootstrap CIs) and compared with the linear and power forms
(``theory.law_extrapolation.compare_forms``). With >= 3 sizes, a and b are fitted log-linearly in size
(``fit_size_scaling``, natural log of parameters in millions).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from theory.law import LawFit, fit_entropy_law
from theory.law_extrapolation import FormFit, SizeScalingFit, compare_forms, fit_size_scaling

from .curves import Curves, law_points, load_many
from .style import color, new_figure, save_figure, SMALL_LEGEND


def group_key(c: Curves) -> str:
    """Size name (``size_name`` tag), else ``<N> params``, else the world of a simulator run."""
    if c.meta.get("size_name"):
        return str(c.meta["size_name"])
    if c.meta.get("size"):
        return f"{int(c.meta['size'])} params"
    return f"sim {c.meta.get('world', '')}".strip() if c.kind == "sim" else "llm"


@dataclass(frozen=True)
class LawGroup:
    """One group's pooled (H, R) points and their fits (``fit`` is None, with ``error``, when the
    points cannot be fitted)."""

    H: np.ndarray
    R: np.ndarray
    size: float | None
    """non-embedding parameters (``meta["size"]``), None when unknown"""
    n_runs: int
    fit: LawFit | None = None
    forms: tuple[FormFit, ...] = ()
    """the exponential, linear and power forms, best (lowest AIC) first"""
    error: str = ""

    @property
    def best_form(self) -> str:
        """Name of the form with the lowest AIC."""
        return self.forms[0].name

    def aic_gap(self, form: str = "exponential") -> float:
        """AIC of ``form`` minus the best AIC (0 when ``form`` is best)."""
        return next(f.aic for f in self.forms if f.name == form) - min(f.aic for f in self.forms)


@dataclass(frozen=True)
class LawResult:
    """Data behind paper Figs. 1 (right), 3 and 7: per group the law fit; a and b vs size."""

    groups: dict[str, LawGroup]
    sizes: np.ndarray
    """sizes of the fitted groups with a known size, ascending"""
    a: np.ndarray
    b: np.ndarray
    scaling: SizeScalingFit | None
    """log-linear fit of a and b in size (parameters in millions); None with < 3 sizes"""
    files: tuple[Path, ...] = ()

    @property
    def fitted(self) -> list[LawGroup]:
        """The groups whose law fit succeeded."""
        return [g for g in self.groups.values() if g.fit is not None]


def law_data(curves: list[Curves], n_boot: int = 300, seed: int = 0, width: int = 5) -> LawResult:
    """Per group: pooled H, R, the law fit, the form comparison; plus the size scaling.
    ``width``: entropy smoothing of :func:`figures.curves.law_points`."""
    by: dict[str, list[Curves]] = {}
    for c in curves:
        by.setdefault(group_key(c), []).append(c)
    groups = {}
    for name, cs in by.items():
        pts = [law_points(c, width) for c in cs]
        H = np.concatenate([p[0] for p in pts])
        R = np.concatenate([p[1] for p in pts])
        g = LawGroup(H=H, R=R, size=cs[0].meta.get("size"), n_runs=len(cs))
        try:
            fit = fit_entropy_law(H, R, n_boot=n_boot, seed=seed)
            forms = compare_forms(H, R)
        except ValueError as err:  # too few points or constant H: report, don't fail the figure
            g = replace(g, error=str(err))
        else:
            g = replace(g, fit=fit, forms=tuple(forms))
        groups[name] = g
    sized = sorted((g.size, g.fit.a, g.fit.b) for g in groups.values() if g.size and g.fit is not None)
    sizes = np.array([s[0] for s in sized], dtype=float)
    a, b = np.array([s[1] for s in sized]), np.array([s[2] for s in sized])
    scaling = fit_size_scaling(sizes / 1e6, {"a": a, "b": b}) if len(set(sizes)) >= 3 else None
    return LawResult(groups=groups, sizes=sizes, a=a, b=b, scaling=scaling)


def plot_law(run_dirs, out_stem: str | Path, pdf: bool = False, n_boot: int = 300, width: int = 5,
             val_key: str = "val/acc") -> LawResult:
    """Draw R vs H (log-entropy axis reversed, as in Fig. 3) with fits, and a, b vs size (Fig. 7)."""
    data = law_data(load_many(run_dirs, val_key), n_boot=n_boot, width=width)
    fig, (ax, ax_c) = new_figure(2, width=4.6)
    for i, (name, g) in enumerate(sorted(data.groups.items())):
        H, R = g.H, g.R
        ax.scatter(H, 100 * R, s=8, color=color(i), alpha=0.6, label=name)
        if g.fit is not None and H.size:
            hh = np.linspace(max(H.min(), 1e-3), H.max(), 100)
            ax.plot(hh, 100 * (-g.fit.a * np.exp(hh) + g.fit.b), color=color(i), lw=1.2)
    if np.all([g.H.min() > 0 for g in data.groups.values() if g.H.size]):
        ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set(xlabel="training entropy H (nats, reversed)", ylabel="validation accuracy (%)",
           title="R = -a exp(H) + b (Figs. 1, 3)")
    ax.legend(fontsize=SMALL_LEGEND)
    if data.sizes.size:
        x = data.sizes
        ax_c.plot(x, data.a, "o", color=color(0), label="a (true)")
        ax_c.plot(x, data.b, "s", color=color(1), label="b (true)")
        if data.scaling:
            xx = np.geomspace(x.min(), x.max(), 50)
            for k, c in (("a", color(0)), ("b", color(1))):
                ax_c.plot(xx, data.scaling.slope[k] * np.log(xx / 1e6) + data.scaling.intercept[k],
                          color=c, lw=1, label=f"{k} log-linear fit")
        ax_c.set_xscale("log")
        ax_c.legend()
    ax_c.set(xlabel="non-embedding parameters (log)", ylabel="coefficient", title="a, b vs size (Fig. 7)")
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
