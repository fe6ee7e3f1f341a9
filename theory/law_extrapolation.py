"""Using the entropy-performance law beyond one fit: extrapolation from part of a run (§2.4, Fig. 5,
and the reverse test a reviewer asked for), the exponential form against alternatives by AIC, and the
coefficients against model size (§2.5, Fig. 7). The fit itself is ``theory.law.fit_entropy_law``.

Public functions (numpy/scipy only):
  predict_from_early   fit the first fraction of a run, predict the rest; and the reverse test.
  compare_forms        exponential vs linear-in-H vs power-in-H forms by R² and AIC.
  fit_size_scaling     log-linear fit of coefficients against model size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from .law import _MIN_POINTS, _aic, _as_1d, _clean, _ols, _r2_rmse, law_predict

__all__ = [
    "EarlyPrediction",
    "Extrapolation",
    "FormFit",
    "SizeScalingFit",
    "compare_forms",
    "fit_size_scaling",
    "predict_from_early",
]


# ----------------------------------------------------------------------------- extrapolation (§2.4)

@dataclass(frozen=True)
class Extrapolation:
    """One fit-on-part, predict-the-rest experiment."""

    a: float
    b: float
    n_fit: int
    n_pred: int
    rmse: float
    """RMSE of −a·exp(H) + b over the predicted points"""
    endpoint_error: float
    """|R̂ − R| at the far end of the predicted part (final step forward, first step in reverse)"""
    max_abs_error: float


@dataclass(frozen=True)
class EarlyPrediction:
    """Result of :func:`predict_from_early`: the forward test and (if identifiable) the reverse one."""

    fraction: float
    forward: Extrapolation
    """fit the first ``fraction`` of points in step order, predict the later ones (paper, Fig. 5)"""
    reverse: Extrapolation | None
    """fit the last ``fraction``, predict the earlier ones (reviewer 1); None if not identifiable"""
    reverse_skipped: str | None = None
    """why ``reverse`` is None"""


def _extrapolate(H, R, fit_idx, pred_idx, end) -> Extrapolation:
    slope, b = _ols(np.exp(H[fit_idx]), R[fit_idx])
    err = law_predict(H[pred_idx], -slope, b) - R[pred_idx]
    end_err = float(abs(law_predict(H[end], -slope, b) - R[end]))
    return Extrapolation(a=-slope, b=b, n_fit=int(fit_idx.size), n_pred=int(pred_idx.size),
                         rmse=float(np.sqrt(np.mean(err**2))), endpoint_error=end_err,
                         max_abs_error=float(np.max(np.abs(err))))


def predict_from_early(H, R, fraction: float = 0.15, *, steps=None) -> EarlyPrediction:
    """Fits R = −a·exp(H) + b on the first ``fraction`` of a run and predicts the rest (§2.4, Fig. 5).

    With points in step order and k = ceil(fraction·n): forward fits points [0, k) and reports
    RMSE = sqrt(mean_i (R̂_i − R_i)²) over i ∈ [k, n) and |R̂ − R| at the final point (the paper's two
    numbers: 0.9% / 0.5% on math, 1.2% / 1.9% on code, from the first 36 steps). The reverse test
    (asked for by a reviewer, since forward extrapolation runs along the flat side of the curve) fits
    the last k points and predicts [0, n − k), reporting the error at the first point. If the late
    points have constant H, ``reverse`` is None and ``reverse_skipped`` says why.

    Args:
      H: entropy in nats, shape [n].
      R: performance, shape [n].
      fraction: share of points used for fitting, in (0, 1); k must be ≥ 3 and < n.
      steps: optional training steps, shape [n]; points are sorted by it (stable). Without it the
        input order is taken as step order.
    Returns:
      :class:`EarlyPrediction`.
    Raises:
      ValueError: the checks of :func:`fit_entropy_law`, a fraction outside (0, 1), fewer than 3 fit
        points, no point left to predict, or constant H within the early part.
    """
    fraction = float(fraction)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    H, R, steps, _ = _clean(H, R, extra=steps, what="predict_from_early")
    if steps is not None:
        order = np.argsort(steps, kind="stable")
        H, R = H[order], R[order]
    n = H.size
    k = math.ceil(fraction * n - 1e-9)
    if k < _MIN_POINTS:
        raise ValueError(f"fraction {fraction} of {n} points leaves {k} to fit; need at least {_MIN_POINTS}"
                         " (use a larger fraction or more points)")
    if k >= n:
        raise ValueError(f"fraction {fraction} of {n} points leaves nothing to predict")
    idx = np.arange(n)
    if np.ptp(H[:k]) == 0:
        raise ValueError(f"predict_from_early: H is constant over the first {k} points")
    forward = _extrapolate(H, R, idx[:k], idx[k:], n - 1)
    if np.ptp(H[n - k:]) == 0:
        return EarlyPrediction(fraction, forward, None, f"H is constant over the last {k} points")
    return EarlyPrediction(fraction, forward, _extrapolate(H, R, idx[n - k:], idx[:n - k], 0))


# ----------------------------------------------------------------------------- alternative forms

@dataclass(frozen=True)
class FormFit:
    """One functional form R = f(H; θ) fitted by least squares on the same points."""

    name: str
    equation: str
    params: dict[str, float]
    r2: float
    rmse: float
    aic: float
    n_params: int


_POWER_C_RANGE = (1e-2, 1e2)


def _power_fit(H: np.ndarray, R: np.ndarray) -> tuple[float, float, float]:
    """R = b − a·H^c: for fixed c the fit is OLS on H^c, so profile SSE(c) over log c (grid + Brent)."""
    def sse(logc: float) -> float:
        x = H ** math.exp(logc)
        if np.ptp(x) == 0 or not np.all(np.isfinite(x)):
            return float("inf")
        s, i = _ols(x, R)
        return float(np.sum((s * x + i - R) ** 2))

    lo, hi = (math.log(v) for v in _POWER_C_RANGE)
    grid = np.linspace(lo, hi, 81)
    vals = np.array([sse(g) for g in grid])
    j = int(np.argmin(vals))
    bracket = (grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)])
    res = optimize.minimize_scalar(sse, bounds=bracket, method="bounded", options={"xatol": 1e-10})
    logc = float(res.x) if res.fun <= vals[j] else float(grid[j])
    c = math.exp(logc)
    s, i = _ols(H**c, R)
    return -s, i, c


def compare_forms(H, R) -> list[FormFit]:
    """Fits three forms to the same (H, R) points and ranks them by AIC (lowest first).

      exponential  R = −a·exp(H) + b      (Eq. 6, the paper's law; 2 parameters)
      linear       R = −a·H + b           (2 parameters)
      power        R = −a·H^c + b, c > 0  (3 parameters; c = 1 is the linear form; needs H ≥ 0)

    AIC = n·ln(SSE/n) + 2(k + 1) for Gaussian residuals with k regression parameters
    (docs/theory.md §1.15: in the usual range H ≲ 1, exp(H) and 1 + H differ by at most e − 2, so the
    forms are hard to tell apart and a model-selection criterion is needed). A difference of a
    couple of AIC units is not decisive.

    Args:
      H: entropy in nats, shape [n]. R: performance, shape [n].
    Returns:
      list of :class:`FormFit`, sorted by AIC; the power form is omitted if some H < 0.
    """
    H, R, _, _ = _clean(H, R, what="compare_forms")
    n = H.size
    out = []
    for name, eq, x in (("exponential", "R = -a*exp(H) + b", np.exp(H)), ("linear", "R = -a*H + b", H)):
        s, i = _ols(x, R)
        r2, rmse, sse = _r2_rmse(R, s * x + i)
        out.append(FormFit(name, eq, {"a": -s, "b": i}, r2, rmse, _aic(sse, n, 2), 2))
    if H.min() >= 0:
        a, b, c = _power_fit(H, R)
        r2, rmse, sse = _r2_rmse(R, b - a * H**c)
        out.append(FormFit("power", "R = -a*H^c + b", {"a": a, "b": b, "c": c}, r2, rmse, _aic(sse, n, 3), 3))
    return sorted(out, key=lambda f: f.aic)


# ----------------------------------------------------------------------------- size scaling (§2.5)

@dataclass(frozen=True)
class SizeScalingFit:
    """coef ≈ slope·ln(size) + intercept for each named coefficient (natural log)."""

    names: tuple[str, ...]
    slope: dict[str, float]
    intercept: dict[str, float]
    r2: dict[str, float]
    n_sizes: int

    def predict(self, sizes) -> dict[str, np.ndarray]:
        """Extrapolated coefficients at ``sizes`` (same unit as the fit, > 0), one array per name."""
        sizes = np.asarray(sizes, dtype=np.float64)
        if np.any(~np.isfinite(sizes)) or np.any(sizes <= 0):
            raise ValueError("sizes must be finite and > 0")
        return {k: self.slope[k] * np.log(sizes) + self.intercept[k] for k in self.names}


def fit_size_scaling(sizes, coefficients) -> SizeScalingFit:
    """Fits each coefficient log-linearly in model size: c(N) = α·ln N + β (§2.5, Fig. 7).

    The paper fits a and b of the Qwen2.5 family against non-embedding parameter count with "a
    log-linear function" on an axis labelled "Model Size (log)"; the base is not stated, and the
    axis range (−1 to 3 for 0.36B–31B) suggests the natural log, used here. Changing the base or the
    size unit only rescales α and shifts β; predictions are unchanged.

    Args:
      sizes: model sizes N > 0 (e.g. billions of non-embedding parameters), shape [m], m ≥ 3, not all equal.
      coefficients: shape [m] (one coefficient), [m, k] (columns named "c0".. or "a", "b" when k = 2),
        or a mapping name -> shape [m] (e.g. ``{"a": [...], "b": [...]}``).
    Returns:
      :class:`SizeScalingFit` with slope α, intercept β and R² per name.
    Raises:
      ValueError: wrong shapes, non-finite values, non-positive or constant sizes, fewer than 3 sizes.
    """
    N = _as_1d(sizes, "sizes")
    if not np.all(np.isfinite(N)) or np.any(N <= 0):
        raise ValueError("sizes must be finite and > 0")
    if N.size < _MIN_POINTS:
        raise ValueError(f"fit_size_scaling needs at least {_MIN_POINTS} sizes, got {N.size}")
    if np.ptp(N) == 0:
        raise ValueError("fit_size_scaling: all sizes are equal; the slope is not identifiable")
    if isinstance(coefficients, dict):
        cols = {str(k): _as_1d(v, f"coefficients[{k!r}]") for k, v in coefficients.items()}
    else:
        C = np.asarray(coefficients, dtype=np.float64)
        if C.ndim == 1:
            C = C[:, None]
        if C.ndim != 2:
            raise ValueError(f"coefficients must be [m] or [m, k], got shape {C.shape}")
        names = ("a", "b") if C.shape[1] == 2 else tuple(f"c{j}" for j in range(C.shape[1]))
        cols = {nm: C[:, j] for j, nm in enumerate(names)}
    if not cols:
        raise ValueError("coefficients is empty")
    x = np.log(N)
    slope, inter, r2 = {}, {}, {}
    for k, y in cols.items():
        if y.shape != N.shape:
            raise ValueError(f"coefficient {k!r} has {y.size} values for {N.size} sizes")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"coefficient {k!r} contains NaN or inf")
        s, i = _ols(x, y)
        slope[k], inter[k] = s, i
        r2[k] = _r2_rmse(y, s * x + i)[0]
    return SizeScalingFit(tuple(cols), slope, inter, r2, int(N.size))
