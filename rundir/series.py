"""One log's (step, H, R) series: :class:`RunSeries`, and how its two halves are paired.

Entropy and validation score are usually logged at different steps (the paper validates every 4
rollout steps, Cui et al. 2025 §2.2): :func:`align_to_preceding` pairs each score with the entropy logged
at the nearest step at or before it; scores logged before the first entropy value are dropped, and the
series records how many pairs were shifted or dropped so callers can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RunSeries", "align_to_preceding", "build_series"]


@dataclass(frozen=True)
class RunSeries:
    """Aligned series of one log: row i is (step[i], H[i], R[i])."""

    path: str
    format: str
    entropy_key: str
    score_key: str
    step: np.ndarray
    """int64 [n], the steps at which the score was logged (ascending)"""
    H: np.ndarray
    """float64 [n], entropy paired with each score"""
    R: np.ndarray
    """float64 [n], score"""
    entropy_step: np.ndarray
    """int64 [n], the step the paired entropy was logged at (≤ step)"""
    n_shifted: int
    """rows whose entropy comes from an earlier step than their score"""
    n_unmatched: int
    """scores dropped because no entropy was logged at or before their step"""
    aligned: bool
    """True when entropy and score were not logged at the same steps (n_shifted + n_unmatched > 0)"""

    def alignment_note(self) -> str | None:
        """One sentence describing the alignment, or None if every pair shares its step."""
        if not self.aligned:
            return None
        parts = []
        if self.n_shifted:
            parts.append(f"{self.n_shifted} of {self.step.size} scores paired with the entropy of the "
                         "nearest preceding step")
        if self.n_unmatched:
            parts.append(f"{self.n_unmatched} scores before the first entropy value dropped")
        return f"{self.path}: '{self.score_key}' and '{self.entropy_key}' are logged at different steps; " \
               + "; ".join(parts)


def _dedupe(steps: list[int], values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sort by step, keeping the value read last for a repeated step."""
    last: dict[int, float] = {}
    for s, v in zip(steps, values):
        last[s] = v
    st = np.array(sorted(last), dtype=np.int64)
    return st, np.array([last[s] for s in st.tolist()], dtype=np.float64)


def align_to_preceding(entropy_steps, entropy, score_steps, score):
    """Pairs each score with the entropy at the nearest step s_H ≤ s_R.

    For score step s: H(s) = entropy[j*], j* = argmax{ entropy_steps[j] : entropy_steps[j] ≤ s }.
    Both series are first sorted by step, a repeated step keeping its last value.

    Args:
      entropy_steps, entropy: entropy log, shapes [m] (integer steps) and [m].
      score_steps, score: score log, shapes [k] and [k].
    Returns:
      (step [n], H [n], R [n], entropy_step [n], n_unmatched) with n = k − n_unmatched; scores before
      the first entropy step are dropped and counted in n_unmatched.
    Raises:
      ValueError: mismatched lengths.
    """
    es, ev, ss, sv = (list(x) for x in (entropy_steps, entropy, score_steps, score))
    if len(es) != len(ev) or len(ss) != len(sv):
        raise ValueError("each step list must have the same length as its value list")
    es_a, ev_a = _dedupe([int(s) for s in es], ev)
    ss_a, sv_a = _dedupe([int(s) for s in ss], sv)
    j = np.searchsorted(es_a, ss_a, side="right") - 1  # index of the last entropy step ≤ score step
    ok = j >= 0
    j = j[ok]
    return ss_a[ok], ev_a[j], sv_a[ok], es_a[j], int((~ok).sum())


def build_series(path, fmt, ek, sk, e_steps, e_vals, s_steps, s_vals) -> RunSeries:
    """The :class:`RunSeries` of one log from its raw entropy and score series (ValueError naming the
    file when either is empty or no score has an entropy at or before it)."""
    if not e_steps:
        raise ValueError(f"{path}: no values of entropy key '{ek}'")
    if not s_steps:
        raise ValueError(f"{path}: no values of score key '{sk}'")
    step, H, R, hstep, n_un = align_to_preceding(e_steps, e_vals, s_steps, s_vals)
    if step.size == 0:
        raise ValueError(f"{path}: every '{sk}' value precedes the first '{ek}' value; nothing to pair")
    n_shift = int((hstep != step).sum())
    return RunSeries(str(path), fmt, ek, sk, step, H, R, hstep, n_shift, n_un, n_shift + n_un > 0)
