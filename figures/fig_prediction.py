"""Predicting the rest of a run from its early part with R = −a·exp(H) + b (Cui et al. 2025, §2.4,
Fig. 5: fitted on the first ~15% of steps, RMSE 0.9% math / 1.2% code over the predicted steps).

Uses ``theory.law_extrapolation.predict_from_early`` on each run's validation points (H smoothed as in
:func:`figures.curves.law_points`), including the reverse test a reviewer asked for (fit late, predict early).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from theory.law import law_predict
from theory.law_extrapolation import predict_from_early

from .curves import law_points, load_many
from .style import color, new_figure, save_figure


def prediction_data(curves, fraction: float = 0.15, width: int = 5) -> dict:
    """Per run: H, R, steps, the number of fitted points k, the prediction and the error numbers."""
    runs = []
    for c in curves:
        H, R, step = law_points(c, width)
        r = {"label": c.label, "kind": c.kind, "H": H, "R": R, "step": step}
        try:
            ep = predict_from_early(H, R, fraction, steps=step)
        except ValueError as err:
            r["error"] = str(err)
        else:
            r.update(k=ep.forward.n_fit, a=ep.forward.a, b=ep.forward.b, pred=law_predict(H, ep.forward.a, ep.forward.b),
                     rmse=ep.forward.rmse, final_error=ep.forward.endpoint_error,
                     reverse_rmse=ep.reverse.rmse if ep.reverse else float("nan"))
        runs.append(r)
    ok = [r for r in runs if "rmse" in r]
    return {"fraction": fraction, "runs": runs,
            "mean_rmse": float(np.mean([r["rmse"] for r in ok])) if ok else float("nan"),
            "mean_final_error": float(np.mean([r["final_error"] for r in ok])) if ok else float("nan"),
            "mean_reverse_rmse": float(np.nanmean([r["reverse_rmse"] for r in ok])) if ok else float("nan")}


def plot_prediction(run_dirs, out_stem: str | Path, pdf: bool = False, fraction: float = 0.15,
                    width: int = 5) -> dict:
    """Draw observed accuracy vs step with the early fit and its extrapolation (Fig. 5)."""
    data = prediction_data(load_many(run_dirs), fraction, width)
    fig, (ax,) = new_figure(1, width=5.0)
    for i, r in enumerate(data["runs"]):
        ax.plot(r["step"], 100 * r["R"], "o", ms=3, color=color(i), alpha=0.7,
                label=f"{r['label']}" + (f" (RMSE {100 * r['rmse']:.1f}%)" if "rmse" in r else ""))
        if "pred" in r:
            k = r["k"]
            ax.plot(r["step"][:k], 100 * r["pred"][:k], "-", color=color(i), lw=2)
            ax.plot(r["step"][k - 1:], 100 * r["pred"][k - 1:], "--", color=color(i), lw=1.2)
    ax.set(xlabel="step", ylabel="validation accuracy (%)",
           title=f"fit on first {100 * fraction:.0f}% (solid), predicted (dashed) — Fig. 5")
    ax.legend(fontsize=6)
    data["files"] = save_figure(fig, out_stem, pdf)
    return data
