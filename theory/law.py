"""The empirical entropy-performance law R = −a·exp(H) + b: fitting, extrapolation, model choice.

Cui et al. (2025), "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models"
(arXiv 2505.22617), Eq. 6: validation performance R and policy entropy H (nats, training batches)
of one RL run without entropy/KL intervention follow

    R = −a·exp(H) + b,        ceiling R(H=0) = b − a,        dR/dH = −a·exp(H)   (§2.4, §2.5).

The law is linear in X = exp(H), so ordinary least squares on (X, R) gives (a, b) in closed form
(docs/theory.md §1.15). Because of that, H must be in nats (in bits exp(H) would be
2^H_bits, a different law) and its aggregation matters (exp(mean H) ≤ mean exp(H)); this module
takes H as given.

Public functions (numpy/scipy only):
  fit_entropy_law      OLS fit with seeded bootstrap confidence intervals (Eq. 6).
  law_predict          R = −a·exp(H) + b.
Extrapolation, model choice and size scaling live in ``theory.law_extrapolation``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["LawFit", "fit_entropy_law", "law_predict"]

_MIN_POINTS = 3
#: fewest points for bootstrap intervals: with 2 fitted parameters, n − 2 ≥ 3 residual degrees of freedom
MIN_CI_POINTS = 5
# Bootstrap replicates are formed in chunks of this many rows to bound memory at n_points × chunk.
_BOOT_CHUNK = 256


# ----------------------------------------------------------------------------- input checks

def _as_1d(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D sequence of real numbers") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _clean(H, R, *, extra=None, extra_name: str = "steps", what: str = "law fit"):
    """Validate (H, R[, extra]); drop rows where H or R is NaN/inf with a warning naming how many."""
    H = _as_1d(H, "H")
    R = _as_1d(R, "R")
    if H.shape != R.shape:
        raise ValueError(f"H and R must have the same length, got {H.size} and {R.size}")
    if extra is not None:
        extra = _as_1d(extra, extra_name)
        if extra.shape != H.shape:
            raise ValueError(f"{extra_name} must have the same length as H, got {extra.size} and {H.size}")
    keep = np.isfinite(H) & np.isfinite(R)
    if extra is not None:
        keep &= np.isfinite(extra)
    n_drop = int(H.size - keep.sum())
    if n_drop:
        warnings.warn(f"{what}: dropped {n_drop} of {H.size} rows containing NaN or inf", stacklevel=3)
        H, R = H[keep], R[keep]
        extra = None if extra is None else extra[keep]
    if H.size < _MIN_POINTS:
        raise ValueError(f"{what} needs at least {_MIN_POINTS} finite (H, R) points, got {H.size}")
    if np.ptp(H) == 0:
        raise ValueError(f"{what}: H is constant ({H[0]!r}); a and b are not identifiable")
    if H.max() > 700:
        raise ValueError(f"{what}: H up to {H.max():.3g} overflows exp(H); H must be entropy in nats")
    return H, R, extra, n_drop


def _check_ci(ci: float) -> float:
    ci = float(ci)
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    return ci


# ----------------------------------------------------------------------------- least squares core

def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of y ≈ slope·x + intercept (centred formulas, stable for large offsets)."""
    xm, ym = x.mean(), y.mean()
    dx = x - xm
    sxx = float(dx @ dx)
    if sxx <= 0:
        raise ValueError("the regressor is constant; the fit is not identifiable")
    slope = float(dx @ (y - ym)) / sxx
    return slope, float(ym - slope * xm)


def _r2_rmse(y: np.ndarray, yhat: np.ndarray) -> tuple[float, float, float]:
    sse = float(np.sum((y - yhat) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    return r2, math.sqrt(sse / y.size), sse


def _aic(sse: float, n: int, n_params: int) -> float:
    """Gaussian AIC = n·ln(SSE/n) + 2(k+1), k regression parameters plus the noise variance."""
    sse = max(sse, n * 1e-300)  # a perfect fit would give ln 0
    return n * math.log(sse / n) + 2 * (n_params + 1)


def law_predict(H, a: float, b: float) -> np.ndarray:
    """R̂ = −a·exp(H) + b (Eq. 6) for entropies ``H`` of any shape (nats)."""
    return -float(a) * np.exp(np.asarray(H, dtype=np.float64)) + float(b)


# ----------------------------------------------------------------------------- the fit

@dataclass(frozen=True)
class LawFit:
    """Result of :func:`fit_entropy_law`. CIs are ``(low, high)`` tuples, ``None`` when ``n_boot == 0``."""

    a: float
    """conversion rate of entropy into performance, dR/dH = −a·exp(H)"""
    b: float
    """intercept of R against exp(H)"""
    ceiling: float
    """predicted performance once entropy is exhausted, R(H=0) = b − a"""
    r2: float
    """coefficient of determination on the fitted points (NaN if R is constant)"""
    rmse: float
    """root mean squared residual, in the units of R"""
    n_points: int
    """points used, after dropping non-finite rows"""
    n_dropped: int
    """rows dropped because H or R was NaN/inf"""
    a_ci: tuple[float, float] | None = None
    b_ci: tuple[float, float] | None = None
    ceiling_ci: tuple[float, float] | None = None
    ci_level: float = 0.95
    n_boot: int = 0
    bootstrap: str = "residual"
    interval: str = "studentized"

    def predict(self, H) -> np.ndarray:
        """R̂ = −a·exp(H) + b at entropies ``H`` (any shape)."""
        return law_predict(H, self.a, self.b)


def _bootstrap(x, y, slope, intercept, *, n_boot, method, rng):
    """Bootstrap replicates of the OLS fit y ≈ slope·x + intercept.

    residual: y* = ŷ + e*, e* drawn from the leverage-adjusted, centred residuals
      r_i / sqrt(1 − h_ii) (Davison & Hinkley 1997, Alg. 6.3), so the spread is not shrunk by the fit.
    pairs: resample (x_i, y_i) rows; robust to heteroscedastic noise.
    Returns a dict of arrays of shape [n_boot]: slope, intercept, s2 (residual variance, n − 2 dof),
    xm and sxx (mean and centred sum of squares of the replicate's x); NaN marks a degenerate replicate.
    """
    n = x.size
    dx = x - x.mean()
    sxx = float(dx @ dx)
    yhat = slope * x + intercept
    if method == "residual":
        lev = 1.0 / n + dx**2 / sxx
        e = (y - yhat) / np.sqrt(np.clip(1.0 - lev, 1e-12, None))
        e -= e.mean()
    out = {k: np.empty(n_boot) for k in ("slope", "intercept", "s2", "xm", "sxx")}
    for start in range(0, n_boot, _BOOT_CHUNK):
        m = min(_BOOT_CHUNK, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))  # [m, n]
        if method == "residual":
            xs = np.broadcast_to(x, (m, n))
            ys = yhat[None, :] + e[idx]
        else:
            xs, ys = x[idx], y[idx]
        xm = xs.mean(axis=1, keepdims=True)  # [m, 1]
        ym = ys.mean(axis=1, keepdims=True)
        dxs = xs - xm
        sxx_b = np.sum(dxs * dxs, axis=1)  # [m]
        with np.errstate(divide="ignore", invalid="ignore"):
            sl = np.where(sxx_b > 0, np.sum(dxs * (ys - ym), axis=1) / sxx_b, np.nan)
        ic = ym[:, 0] - sl * xm[:, 0]
        res = ys - (sl[:, None] * xs + ic[:, None])
        sl_ = slice(start, start + m)
        out["slope"][sl_], out["intercept"][sl_] = sl, ic
        out["s2"][sl_] = np.sum(res * res, axis=1) / max(n - 2, 1)
        out["xm"][sl_], out["sxx"][sl_] = xm[:, 0], sxx_b
    return out


def _se(s2, n, xm, sxx, x0):
    """Standard error of the fitted line at x0 (x0=None: of the slope), from the OLS formulas."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if x0 is None:
            return np.sqrt(s2 / sxx)
        return np.sqrt(s2 * (1.0 / n + (x0 - xm) ** 2 / sxx))


def _intervals(x, y, slope, intercept, boot, level, interval):
    """CIs for a = −slope, b = line at x=0 and the ceiling = line at x=exp(0)=1.

    studentized (bootstrap-t): θ ∈ [θ̂ − q_hi·ŝe, θ̂ − q_lo·ŝe] with q the quantiles of
      t* = (θ* − θ̂)/ŝe* (Davison & Hinkley 1997, §5.2); it carries the extra width of estimating the
      noise level, which the percentile interval misses at small n.
    percentile: θ ∈ [quantile_lo(θ*), quantile_hi(θ*)].
    """
    n = x.size
    s2 = float(np.sum((y - slope * x - intercept) ** 2)) / max(n - 2, 1)
    xm, sxx = float(x.mean()), float(np.sum((x - x.mean()) ** 2))
    qs = [(1 - level) / 2, (1 + level) / 2]
    cis = {}
    for name, x0, sign in (("a_ci", None, -1.0), ("b_ci", 0.0, 1.0), ("ceiling_ci", 1.0, 1.0)):
        est = sign * slope if x0 is None else intercept + slope * x0
        est_b = sign * boot["slope"] if x0 is None else boot["intercept"] + boot["slope"] * x0
        if interval == "percentile":
            ok = np.isfinite(est_b)
            lo, hi = np.quantile(est_b[ok], qs)
        else:
            se = float(_se(s2, n, xm, sxx, x0))
            if se == 0.0:  # exact fit: every replicate reproduces it
                cis[name] = (float(est), float(est))
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (est_b - est) / _se(boot["s2"], n, boot["xm"], boot["sxx"], x0)
            t = t[np.isfinite(t)]
            q_lo, q_hi = np.quantile(t, qs)
            lo, hi = est - q_hi * se, est - q_lo * se
        cis[name] = (float(lo), float(hi))
    return cis


def fit_entropy_law(H, R, *, n_boot: int = 1000, seed: int | None = 0, ci: float = 0.95,
                    bootstrap: str = "residual", interval: str = "studentized") -> LawFit:
    """Fits R = −a·exp(H) + b (Eq. 6) by ordinary least squares on X = exp(H).

    With X = exp(H):  a = −Cov(X, R)/Var(X),  b = mean(R) + a·mean(X),  ceiling = b − a = R̂(H=0)
    (Cui et al. 2025, Eq. 6 and §2.4; closed form from docs/theory.md §1.15). Bootstrap intervals for
    a, b and the ceiling come from ``n_boot`` replicates drawn with ``numpy.random.default_rng(seed)``.
    The replicates treat residuals as independent; the points of a training log are autocorrelated
    in time, so on real runs read the intervals as a lower bound on the uncertainty.

    Args:
      H: policy entropy in nats, shape [n].
      R: validation performance at the same steps, shape [n] (any unit; a, b, RMSE share it).
      n_boot: bootstrap replicates (0 skips the intervals; so do fewer than :data:`MIN_CI_POINTS`
        points, with a warning).
      seed: seed of the numpy Generator used for the bootstrap.
      ci: confidence level of the intervals, in (0, 1).
      bootstrap: "residual" (default; fixed H, resampled leverage-adjusted residuals) or "pairs".
      interval: "studentized" (default; bootstrap-t, close to nominal coverage at n ≈ 15) or
        "percentile" (simpler, undercovers at small n).
    Returns:
      :class:`LawFit`. Rows with NaN/inf are dropped with a warning.
    Raises:
      ValueError: mismatched lengths, fewer than 3 finite points, constant H, bad options.
    """
    ci = _check_ci(ci)
    if int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if bootstrap not in ("residual", "pairs"):
        raise ValueError(f"bootstrap must be 'residual' or 'pairs', got {bootstrap!r}")
    if interval not in ("studentized", "percentile"):
        raise ValueError(f"interval must be 'studentized' or 'percentile', got {interval!r}")
    H, R, _, n_drop = _clean(H, R, what="fit_entropy_law")
    X = np.exp(H)
    slope, b = _ols(X, R)
    a = -slope
    r2, rmse, _ = _r2_rmse(R, slope * X + b)
    cis: dict = {}
    if n_boot and H.size < MIN_CI_POINTS:
        warnings.warn(f"fit_entropy_law: {H.size} points are too few for a {ci:.0%} interval "
                      "(a and b use 2 of "
                      f"them; need >= {MIN_CI_POINTS}); the fit is reported without intervals", stacklevel=2)
        n_boot = 0
    if n_boot:
        rng = np.random.default_rng(seed)
        boot = _bootstrap(X, R, slope, b, n_boot=int(n_boot), method=bootstrap, rng=rng)
        cis = _intervals(X, R, slope, b, boot, ci, interval)
    return LawFit(a=a, b=b, ceiling=b - a, r2=r2, rmse=rmse, n_points=int(H.size), n_dropped=n_drop,
                  ci_level=ci, n_boot=int(n_boot), bootstrap=bootstrap, interval=interval, **cis)
