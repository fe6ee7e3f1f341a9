"""Predicting the rest of a run from its early part with R = −a·exp(H) + b (Cui et al. 2025, §2.4,
Fig. 5: fitted on the first ~15% of steps, RMSE 0.9% math / 1.2% code over the predicted steps).

Uses ``theory.law_extrapolation.predict_from_early`` on each run's validation points (H smoothed as in
:func:`figures.curves.law_points`), including the reverse test a reviewer asked for (fit late, predict early).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from theory.law import law_predict
from theory.law_extrapolation import predict_from_early

from .curves import law_points, load_many
from .style import color, new_figure, save_figure, SMALL_LEGEND


@dataclass(frozen=True)
class PredictionRun:
    """One run's validation points and, when the early fit succeeded, its prediction and errors (else
    ``k`` and ``pred`` are None, the errors NaN, and ``error`` says why)."""

    label: str
    kind: str
    H: np.ndarray
    R: np.ndarray
    step: np.ndarray
    k: int | None = None
    """number of fitted (early) points"""
    a: float = float("nan")
    b: float = float("nan")
    pred: np.ndarray | None = None
    """the fitted law at every point"""
    rmse: float = float("nan")
    """RMSE over the predicted (later) points"""
    final_error: float = float("nan")
    reverse_rmse: float = float("nan")
    """fit late, predict early (NaN when the reverse test was skipped)"""
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the early fit succeeded."""
        return self.pred is not None


@dataclass(frozen=True)
class PredictionResult:
    """Data behind paper Fig. 5: per run, and the mean errors over the runs whose fit succeeded."""

    fraction: float
    runs: tuple[PredictionRun, ...]
    mean_rmse: float
    mean_final_error: float
    mean_reverse_rmse: float
    files: tuple[Path, ...] = ()


def prediction_data(curves, fraction: float = 0.15, width: int = 5) -> PredictionResult:
    """Per run: H, R, steps, the number of fitted points k, the prediction and the error numbers."""
    runs = []
    for c in curves:
        H, R, step = law_points(c, width)
        r = PredictionRun(label=c.label, kind=c.kind, H=H, R=R, step=step)
        try:
            ep = predict_from_early(H, R, fraction, steps=step)
        except ValueError as err:
            r = replace(r, error=str(err))
        else:
            f = ep.forward
            r = replace(r, k=f.n_fit, a=f.a, b=f.b, pred=law_predict(H, f.a, f.b), rmse=f.rmse,
                        final_error=f.endpoint_error,
                        reverse_rmse=ep.reverse.rmse if ep.reverse else float("nan"))
        runs.append(r)
    ok = [r for r in runs if r.ok]
    nan = float("nan")
    return PredictionResult(fraction=fraction, runs=tuple(runs),
                            mean_rmse=float(np.mean([r.rmse for r in ok])) if ok else nan,
                            mean_final_error=float(np.mean([r.final_error for r in ok])) if ok else nan,
                            mean_reverse_rmse=float(np.nanmean([r.reverse_rmse for r in ok])) if ok else nan)


def plot_prediction(run_dirs, out_stem: str | Path, pdf: bool = False, fraction: float = 0.15,
                    width: int = 5) -> PredictionResult:
    """Draw observed accuracy vs step with the early fit and its extrapolation (Fig. 5)."""
    data = prediction_data(load_many(run_dirs), fraction, width)
    fig, (ax,) = new_figure(1, width=5.0)
    for i, r in enumerate(data.runs):
        ax.plot(r.step, 100 * r.R, "o", ms=3, color=color(i), alpha=0.7,
                label=f"{r.label}" + (f" (RMSE {100 * r.rmse:.1f}%)" if r.ok else ""))
        if r.ok:
            k = r.k
            ax.plot(r.step[:k], 100 * r.pred[:k], "-", color=color(i), lw=2)
            ax.plot(r.step[k - 1:], 100 * r.pred[k - 1:], "--", color=color(i), lw=1.2)
    ax.set(xlabel="step", ylabel="validation accuracy (%)",
           title=f"fit on first {100 * fraction:.0f}% (solid), predicted (dashed) — Fig. 5")
    ax.legend(fontsize=SMALL_LEGEND)
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
