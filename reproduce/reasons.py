"""Likely reasons why a claim of :mod:`reproduce.claims` does not (fully) hold, each stated only when the
evidence shows it (every function returns None otherwise), and the token-fraction text of the Cov
method rows.

Each reason is a mechanical test on the typed figure results (:class:`figures.results.FigureResults`), so
a reader can check it against the tables of the report:

- greedy-accuracy law (:func:`greedy_law_reason`): the same runs fit the law with T=1 sample accuracy as R
  (R² >= :data:`GOOD_FIT`) but not with greedy accuracy;
- early prediction (:func:`prediction_reason`): the fitted points cover under half of the entropy fall,
  or the early fit's ceiling b - a is above 100%;
- entropy dynamics (:func:`decomposition_reason`), from the LLM runs' per-state decomposition: the
  cross-state share exceeds the own-state share (updates on other states drive the change), the
  linearised change explains little (R² < 0.5: the network responds nonlinearly), or optimizer history
  carries >= :data:`HISTORY_SHARE` of it (Adam momentum, weight decay);
- method accuracy (:func:`method_gain_reason`): GRPO ends at >= :data:`CEILING` accuracy, or the 95%
  interval of the difference covers 0;
- method entropy (:func:`method_entropy_reason`): the method's own sweep reaches a clearly larger
  entropy ratio at another setting;
- response length (:func:`response_length_reason`): GRPO's answers are under :data:`SHORT_ANSWER` tokens.
"""

from __future__ import annotations

import numpy as np

from figures.results import Score, Variant

from .claim_rules import Evidence, is_finite, num, pct

GOOD_FIT = 0.8
"""R² from which a fit counts as good in a reason (the law's "holds" threshold)"""
CEILING = 0.95
"""GRPO's final accuracy from which there is too little room left to improve on it"""
SHORT_ANSWER = 20.0
"""mean response length (tokens) under which there is no room for longer reasoning (paper: ~1000)"""
HISTORY_SHARE = 0.3
"""share of the entropy change from optimizer history from which it is named as a reason"""
PAPER_FRACTIONS = {"clip_cov": ("clip_ratio", "r", 2e-4), "kl_cov": ("kl_ratio", "k", 2e-3)}
"""Cov method -> (objective parameter, the paper's symbol, the paper's token fraction; §4.3, Table 2)"""


def _frac(x: float) -> str:
    """``2e-4`` -> ``"2e-4"``, ``0.2`` -> ``"0.2"``."""
    return f"{x:.0e}".replace("e-0", "e-") if 0 < x < 0.01 else f"{x:g}"


def fraction_text(method: str, params: dict, tokens: float, pool: str = "update") -> str:
    """``"k = 0.2 vs the paper's 2e-3 (100x larger, as our batches are tiny: ~84 tokens per update, where
    2e-3 would select 0.17 tokens)"``: the token fraction a Cov method used (its default when ``params``
    lacks it), the paper's, and why ours is larger; ``tokens``: the pool's size (NaN: unknown), ``pool``:
    what it is counted per. ValueError for a method without a token fraction."""
    if method not in PAPER_FRACTIONS:
        raise ValueError(f"{method!r} has no token fraction; choose one of {sorted(PAPER_FRACTIONS)}")
    key, sym, paper = PAPER_FRACTIONS[method]
    ours = float(params.get(key, paper))
    size = (f": ~{tokens:.0f} tokens per {pool}, where {_frac(paper)} would select {paper * tokens:.2g} "
            "tokens" if is_finite(tokens) else "")
    why = f" ({ours / paper:.0f}x larger, as our batches are tiny{size})" if ours / paper > 1.5 else ""
    return f"{sym} = {_frac(ours)} vs the paper's {_frac(paper)}{why}"


def greedy_law_reason(ev: Evidence) -> str | None:
    """The law fits T=1 sample accuracy well where it fits greedy accuracy poorly."""
    law = ev.figures.law
    if ev.figures.llm_score is not Score.GREEDY or Variant.T1 not in law or Variant.LLM not in law:
        return None
    r2 = [float(np.median([g.fit.r2 for g in law[v].fitted])) if law[v].fitted else np.nan
          for v in (Variant.LLM, Variant.T1)]
    if not (is_finite(r2[1]) and r2[1] >= GOOD_FIT and (not is_finite(r2[0]) or r2[1] > r2[0])):
        return None
    return (f"with T=1 sample accuracy as R the same runs fit with R² {r2[1]:.2f}: greedy accuracy scores "
            "each prompt 0 or 1 (right only once greedy decoding lands on the right answer), so it moves in "
            "jumps as the policy sharpens, while sampled accuracy follows the answer probabilities")


def prediction_reason(ev: Evidence, v: Variant) -> str | None:
    """The early points cover under half of the entropy fall, or their fit's ceiling is above 100%."""
    p = ev.figures.prediction.get(v)
    runs = [r for r in (p.runs if p else ()) if r.ok and r.k and r.H.size > r.k]
    if not runs:
        return None
    covered = float(np.median([(r.H[0] - r.H[r.k - 1]) / (r.H[0] - r.H[-1]) if r.H[0] > r.H[-1] else np.nan
                               for r in runs]))
    ceiling = float(np.median([r.b - r.a for r in runs]))
    why = []
    if is_finite(covered) and covered < 0.5:
        why.append(f"the fitted points cover only {pct(covered)} of the entropy fall, so the rest is "
                   "extrapolated")
    if is_finite(ceiling) and ceiling > 1:
        why.append(f"the early fit's ceiling b - a = {pct(ceiling)} is above 100%")
    return "; ".join(why) or None


def decomposition_reason(ev: Evidence) -> str | None:
    """What the per-state decomposition of the diagnosed LLM runs measures (medians over runs): cross share
    above own share, linearised R² under 0.5, history share >= :data:`HISTORY_SHARE`."""
    runs = ev.figures.dynamics.runs if ev.figures.dynamics else ()
    ds = [r.summary["decomposition"] for r in runs if "decomposition" in r.summary]
    if not ds:
        return None

    def med(term, key):
        vals = [float(d[term][key]) for d in ds if is_finite(d.get(term, {}).get(key))]
        return float(np.median(vals)) if vals else np.nan

    own, cross, hist, lin = (med("own", "share"), med("cross", "share"), med("history", "share"),
                             med("linearised", "r2"))
    why = []
    if is_finite(cross) and is_finite(own) and cross > own:
        why.append(f"most of the entropy change at a state comes from updates on other states (cross share "
                   f"{pct(cross)}, own {pct(own)}): the shared network generalises across states, which the "
                   "tabular theorems leave out")
    if is_finite(lin) and lin < 0.5:
        why.append(f"the linearised network change explains the observed change only with R² {lin:.2f}: the "
                   "network responds nonlinearly to the update")
    if is_finite(hist) and hist >= HISTORY_SHARE:
        why.append(f"optimizer history (Adam momentum, weight decay) carries {pct(hist)} of the change, "
                   "which the one-step theorems do not model")
    return "; ".join(why) or None


def _methods(ev: Evidence, v: Variant, name: str):
    ms = ev.figures.methods[v].methods if v in ev.figures.methods else {}
    return ms.get(name), ms.get("grpo")


def method_gain_reason(ev: Evidence, v: Variant, name: str) -> str | None:
    """GRPO is already at the ceiling, or the difference is within the seeds' 95% interval."""
    o, g = _methods(ev, v, name)
    if not (o and g):
        return None
    if is_finite(g.acc.final.mean) and g.acc.final.mean >= CEILING:
        return f"GRPO already ends at {pct(g.acc.final.mean, 1)}, leaving under {pct(1 - CEILING)} to gain"
    diff = o.acc.final.mean - g.acc.final.mean
    half = float(np.hypot(o.acc.final.half, g.acc.final.half))
    if is_finite(half) and half >= abs(diff):
        return (f"the 95% interval (± {100 * half:.1f} pts over {min(o.n_seeds, g.n_seeds)} seeds) covers 0: "
                "the difference is within seed noise")
    return None


def method_entropy_reason(ev: Evidence, v: Variant, name: str) -> str | None:
    """The method's sweep reaches a clearly larger entropy ratio (>= 1.2x this one) at another setting."""
    o, g = _methods(ev, v, name)
    sw = ev.figures.sweep(name, v)
    if not (o and g and sw and sw.values) or not g.entropy.final.mean > 0:
        return None
    ratio = o.entropy.final.mean / g.entropy.final.mean
    base = sw.values[0].final_entropy
    best = max(sw.values, key=lambda p: p.final_entropy)
    top = best.final_entropy / base if is_finite(base) and base > 0 else np.nan
    if not (is_finite(top) and is_finite(ratio) and top >= 1.2 * ratio):
        return None
    return (f"its sweep reaches {num(top, '.2f')}x the baseline's entropy at {sw.knob}={best.value:g}: the "
            "setting compared here is a weak one")


def response_length_reason(ev: Evidence) -> str | None:
    """GRPO's answers are too short to lengthen."""
    _, g = _methods(ev, Variant.LLM, "kl_cov")
    x = g.resp_len.final.mean if g else np.nan
    if not (is_finite(x) and x < SHORT_ANSWER):
        return None
    return f"GRPO's answers are {num(x, '.1f')} tokens long (paper: ~1000): no room for longer reasoning"
