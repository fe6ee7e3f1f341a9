"""Method comparison: entropy, response length and validation accuracy vs step for GRPO, clip-higher,
Clip-Cov and KL-Cov with a band over seeds, and the Table 2 analogue (Cui et al. 2025, Fig. 11,
Table 2; §4.3). The paper reports one run per method; we report mean and a 95% t-interval over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import stats

from .curves import load_many, smooth
from .style import METHOD_COLORS, color, new_figure, save_figure

METHOD_ORDER = ("grpo", "clip_higher", "clip_cov", "kl_cov")


class MeanCI(NamedTuple):
    """Mean of the finite values, half-width of its t-interval (NaN when n < 2) and n."""

    mean: float
    half: float
    n: int


def mean_ci(x, level: float = 0.95) -> MeanCI:
    """``(mean, half-width of the t-interval, n)`` of the finite values (half-width NaN when n < 2)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return MeanCI(float("nan"), float("nan"), 0)
    if x.size < 2:
        return MeanCI(float(x.mean()), float("nan"), 1)
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return MeanCI(float(x.mean()), float(half), int(x.size))


def _stack(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Common steps (those of the shortest run) and values ``[runs, steps]`` interpolated onto them."""
    base = min((s for s, _ in series), key=len)
    return base, np.array([np.interp(base, s, v) for s, v in series])


@dataclass(frozen=True)
class MethodSeries:
    """One quantity of one method: the seed-mean curve with its min/max band, and the final value."""

    step: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    final: MeanCI
    """mean ± CI over seeds of each seed's mean over the last ``last_frac`` of its points"""
    final_per_seed: list[float]


@dataclass(frozen=True)
class MethodStats:
    """One method (objective) over its seeds: entropy, response length and validation accuracy."""

    n_seeds: int
    seeds: list
    entropy: MethodSeries
    resp_len: MethodSeries
    acc: MethodSeries
    params: dict = field(default_factory=dict)
    """the objective's parameters (of the first seed's run), e.g. ``{"kl_ratio": 0.2, "kl_coef": 7.0}``"""
    tokens: float = float("nan")
    """median over seeds of the response tokens per update (:attr:`figures.curves.Curves.tokens`)"""


@dataclass(frozen=True)
class MethodsResult:
    """Data behind paper Fig. 11 and Table 2: method name -> :class:`MethodStats`, in
    :data:`METHOD_ORDER` (others after, by name)."""

    methods: dict[str, MethodStats]
    files: tuple[Path, ...] = ()


def methods_data(curves, last_frac: float = 0.2) -> MethodsResult:
    """Per method: seed-mean curves with min/max bands and the final numbers (mean of the last
    ``last_frac`` of the validation points / steps, then mean ± CI over seeds)."""
    by: dict[str, list] = {}
    for c in curves:
        by.setdefault(c.meta["objective"], []).append(c)
    methods = {}
    for name in sorted(by, key=lambda n: (METHOD_ORDER.index(n) if n in METHOD_ORDER else 99, n)):
        cs = by[name]
        series = {}
        for key, step_of, val_of in (("entropy", "step", "entropy"), ("resp_len", "step", "resp_len"),
                                     ("acc", "val_step", "val_acc")):
            ser = [(getattr(c, step_of), smooth(getattr(c, val_of), 5 if key != "acc" else 1)) for c in cs]
            steps, vals = _stack(ser)
            finals = []
            for c in cs:
                v = getattr(c, val_of)
                k = max(1, int(round(last_frac * v.size)))
                finals.append(np.nanmean(v[-k:]) if np.isfinite(v[-k:]).any() else np.nan)
            series[key] = MethodSeries(step=steps, mean=vals.mean(0), lo=vals.min(0), hi=vals.max(0),
                                       final=mean_ci(finals), final_per_seed=finals)
        tokens = [c.tokens for c in cs if np.isfinite(c.tokens)]
        methods[name] = MethodStats(n_seeds=len(cs), seeds=[c.meta.get("seed") for c in cs], **series,
                                    params=dict(cs[0].meta.get("params", {})),
                                    tokens=float(np.median(tokens)) if tokens else float("nan"))
    return MethodsResult(methods=methods)


def plot_methods(run_dirs, out_stem: str | Path, pdf: bool = False) -> MethodsResult:
    """Draw the three panels of Fig. 11 with seed bands."""
    data = methods_data(load_many(run_dirs))
    fig, axes = new_figure(3, width=3.8)
    titles = {"entropy": "entropy (nats)", "resp_len": "response length (tokens)",
              "acc": "validation accuracy"}
    for i, (name, m) in enumerate(data.methods.items()):
        col = METHOD_COLORS.get(name, color(i + 4))
        for ax, (key, s) in zip(axes, (("entropy", m.entropy), ("resp_len", m.resp_len), ("acc", m.acc))):
            ax.plot(s.step, s.mean, color=col, lw=1.3, label=f"{name} (n={m.n_seeds})")
            if m.n_seeds > 1:
                ax.fill_between(s.step, s.lo, s.hi, color=col, alpha=0.2, lw=0)
            ax.set(xlabel="step", title=titles[key] + " (Fig. 11)")
    axes[0].legend()
    if not any(np.isfinite(m.resp_len.mean).any() for m in data.methods.values()):  # simulator runs
        axes[1].text(0.5, 0.5, "no response lengths\n(fixed-horizon simulator)", ha="center", va="center",
                     transform=axes[1].transAxes, color="0.4")
        axes[1].set(xticks=[], yticks=[])
    return replace(data, files=tuple(save_figure(fig, out_stem, pdf)))
