"""R vs H with the fitted law R = −a·exp(H) + b per model size, and the coefficients vs size
(Cui et al. 2025, Eq. 6; Fig. 1 right, Fig. 3, Fig. 7; paper §2.2, §2.5; theory.md §1.15).

Runs are grouped by ``meta["size"]`` (non-embedding parameters) when present, else by label; each
group's (H, R) points at the validation steps are pooled and fitted with
``theory.law.fit_entropy_law`` (bootstrap CIs) and compared with the linear and power forms
(``theory.law_extrapolation.compare_forms``). With >= 3 sizes, a and b are fitted log-linearly in size
(``fit_size_scaling``, natural log of parameters in millions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from theory.law import fit_entropy_law
from theory.law_extrapolation import compare_forms, fit_size_scaling

from .curves import Curves, law_points, load_many
from .style import color, new_figure, save_figure


def group_key(c: Curves) -> str:
    """Size name (``size_name`` tag), else ``<N> params``, else the world of a simulator run."""
    if c.meta.get("size_name"):
        return str(c.meta["size_name"])
    if c.meta.get("size"):
        return f"{int(c.meta['size'])} params"
    return f"sim {c.meta.get('world', '')}".strip() if c.kind == "sim" else "llm"


def law_data(curves: list[Curves], n_boot: int = 300, seed: int = 0, width: int = 5) -> dict:
    """Per group: pooled H, R, the LawFit fields, the form comparison; plus the size scaling.
    ``width``: entropy smoothing of :func:`figures.curves.law_points`."""
    groups: dict[str, list[Curves]] = {}
    for c in curves:
        groups.setdefault(group_key(c), []).append(c)
    out = {"groups": {}}
    for name, cs in groups.items():
        pts = [law_points(c, width) for c in cs]
        H = np.concatenate([p[0] for p in pts])
        R = np.concatenate([p[1] for p in pts])
        g = {"H": H, "R": R, "size": cs[0].meta.get("size"), "n_runs": len(cs)}
        try:
            fit = fit_entropy_law(H, R, n_boot=n_boot, seed=seed)
            forms = compare_forms(H, R)
        except ValueError as err:  # too few points or constant H: report, don't fail the figure
            g["error"] = str(err)
        else:
            g.update(a=fit.a, b=fit.b, a_ci=fit.a_ci, b_ci=fit.b_ci, ceiling=fit.ceiling, r2=fit.r2,
                     rmse=fit.rmse, n_points=fit.n_points,
                     forms={f.name: {"aic": f.aic, "r2": f.r2, "rmse": f.rmse} for f in forms},
                     best_form=forms[0].name)
        out["groups"][name] = g
    sized = [(g["size"], g["a"], g["b"]) for g in out["groups"].values() if g.get("size") and "a" in g]
    sized.sort()
    out["sizes"] = np.array([s[0] for s in sized], dtype=float)
    out["a"] = np.array([s[1] for s in sized])
    out["b"] = np.array([s[2] for s in sized])
    out["scaling"] = None
    if len(set(out["sizes"])) >= 3:
        sc = fit_size_scaling(out["sizes"] / 1e6, {"a": out["a"], "b": out["b"]})
        out["scaling"] = {"slope": sc.slope, "intercept": sc.intercept, "r2": sc.r2}
    return out


def plot_law(run_dirs, out_stem: str | Path, pdf: bool = False, n_boot: int = 300, width: int = 5,
             val_key: str = "val/acc") -> dict:
    """Draw R vs H (log-entropy axis reversed, as in Fig. 3) with fits, and a, b vs size (Fig. 7)."""
    data = law_data(load_many(run_dirs, val_key), n_boot=n_boot, width=width)
    fig, (ax, ax_c) = new_figure(2, width=4.6)
    for i, (name, g) in enumerate(sorted(data["groups"].items())):
        H, R = g["H"], g["R"]
        ax.scatter(H, 100 * R, s=8, color=color(i), alpha=0.6, label=name)
        if "a" in g and H.size:
            hh = np.linspace(max(H.min(), 1e-3), H.max(), 100)
            ax.plot(hh, 100 * (-g["a"] * np.exp(hh) + g["b"]), color=color(i), lw=1.2)
    if np.all([g["H"].min() > 0 for g in data["groups"].values() if g["H"].size]):
        ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set(xlabel="training entropy H (nats, reversed)", ylabel="validation accuracy (%)",
           title="R = -a exp(H) + b (Figs. 1, 3)")
    ax.legend(fontsize=6)
    if data["sizes"].size:
        x = data["sizes"]
        ax_c.plot(x, data["a"], "o", color=color(0), label="a (true)")
        ax_c.plot(x, data["b"], "s", color=color(1), label="b (true)")
        if data["scaling"]:
            xx = np.geomspace(x.min(), x.max(), 50)
            for k, c in (("a", color(0)), ("b", color(1))):
                ax_c.plot(xx, data["scaling"]["slope"][k] * np.log(xx / 1e6) + data["scaling"]["intercept"][k],
                          color=c, lw=1, label=f"{k} log-linear fit")
        ax_c.set_xscale("log")
        ax_c.legend(fontsize=7)
    ax_c.set(xlabel="non-embedding parameters (log)", ylabel="coefficient", title="a, b vs size (Fig. 7)")
    data["files"] = save_figure(fig, out_stem, pdf)
    return data
