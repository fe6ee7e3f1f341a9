"""The paper's claims next to our measured numbers, with a verdict (holds / partly / does not hold).

Each claim is declared once in :data:`CLAIMS` as a :class:`~reproduce.claim_rules.ClaimSpec`:
the claim, its paper reference,
the paper's number (text), how ours is measured from the :class:`Evidence` (the typed figure results of
:mod:`figures.draw`, the rows of ``theory.verify.run_checks`` and the Table 1 analogue
``fig_covariance.covariance_percentiles``) and the :class:`Rule` that grades it, whose thresholds the
table shows so that a reader can disagree with the verdict. Absent figures give "not measured". A claim
may name its likely reason when it does not hold (:mod:`reproduce.reasons`, stated only when the data
shows it) and mark one of the paper's key findings (``key``, ``plain``) for the report's summary
(:func:`reproduce.claim_rules.summarize`). Paper
numbers (docs/paper.md): Cui et al. 2025 §2.3 (Fig. 2), §2.4 (Fig. 5), §2.5 (Fig. 7), §3.3 (Fig. 8,
Table 1), §4.3 (Table 2, Fig. 11), Figs. 9, 10, 12.
"""

from __future__ import annotations

import math

import numpy as np

from figures.fig_covariance import MIN_GROUP_STATES, Table1Result, top_group_size
from figures.results import FigureResults, Score, Variant

from .claim_rules import (NAN, Absent, ClaimRow, ClaimSpec, Evidence, Measured, Rule, at_least, finite_mean,
                          is_finite, num, pct)
from .claims_dynamics import DYNAMICS_CLAIMS
from .reasons import (PAPER_FRACTIONS, decomposition_reason, fraction_text, greedy_law_reason,
                      method_gain_reason, method_entropy_reason, prediction_reason, response_length_reason)

GAIN = Rule(lambda x: x >= 0.02, lambda x: x > 0, "+2 pts holds, >0 partly")
R2_LAW = at_least(0.8, 0.5, "R² >= 0.8 holds, >= 0.5 partly")
PREDICTION = Rule(lambda x: x <= 0.02, lambda x: x <= 0.05, "<= 2 pts holds, <= 5 partly")
EXTREME_COV = at_least(10, 3, ">= 10x holds, >= 3x partly")
COV_DYNAMICS = Rule(lambda x: x[0] >= 0.5 and x[1] > 0, lambda x: x[0] > 0 and x[1] > 0,
                   "raw r >= 0.5 with 95% CI above 0 holds, CI above 0 partly",
                   judged=lambda x: is_finite(x[0]) and is_finite(x[1]))
"""(Pearson r of the raw per-step series, lower end of its moving-block bootstrap 95% CI)"""
SWEEP_RULE = ">= 2x holds / entropy up & acc down"
NO_SWEEP = Absent("n/a (runs only in --profile full)")
LLM, SIM = Variant.LLM, Variant.SIM
WHERE = {LLM: "LLM", SIM: "tabular LM"}


# ----------------------------------------------------------------------------- how ours is measured

def _drawn(figure: str, v: Variant, fn, *args):
    """A measure: ``fn(result, evidence, *args)`` of ``figure``'s ``v`` drawing; None when not drawn."""
    return lambda ev: None if (d := getattr(ev.figures, figure).get(v)) is None else fn(d, ev, *args)


def _accs(d) -> tuple[float, float]:
    """Mean accuracy at the start and at the end of the runs of a collapse result."""
    return finite_mean([r.acc_start for r in d.runs]), finite_mean([r.acc_end for r in d.runs])


def _acc_rise(d, ev=None, suffix: str = "") -> Measured:
    a0, a1 = _accs(d)
    return Measured(a1 - a0, f"{pct(a0, 1)} -> {pct(a1, 1)}{suffix}")


def _collapse_claims(v: Variant) -> list[ClaimSpec]:
    """§2.3, Figs. 1, 2, 11: entropy collapses, mostly early, while accuracy rises (mostly early)."""
    where, llm = WHERE[v], v is LLM

    def drop(d, ev):
        x = finite_mean([r.entropy_drop for r in d.runs])
        return Measured(x, f"{pct(x)} drop ({len(d.runs)} runs)")

    def rise(d, ev):  # the LLM row says when R is sampled accuracy
        sampled = llm and ev.figures.llm_score is Score.SAMPLED
        return _acc_rise(d, suffix=" (T=0.6 samples)" if sampled else "")

    def reward(d, ev):
        r0, r1 = finite_mean([r.reward_start for r in d.runs]), finite_mean([r.reward_end for r in d.runs])
        return Measured(r1 - r0, f"{pct(r0, 1)} -> {pct(r1, 1)} (first / last 10% of steps)")

    def entropy_share(d, ev, i):
        return Measured(x := float(d.entropy_share[i]), pct(x))

    def gain_share(d, ev, i):  # no accuracy gain: no share of it ("does not hold")
        a0, a1 = _accs(d)
        gained = is_finite(a0) and is_finite(a1) and a1 > a0
        g = float(d.gain_share[i]) if gained else NAN
        return Measured((gained, g), pct(g) if gained else "n/a (no gain)")

    specs = [ClaimSpec(f"entropy collapses under GRPO ({where})", "§2.3, Fig. 11", "~97% drop (0.65 -> 0.02)",
                       _drawn("collapse", v, drop), at_least(0.5, 0.2, ">=50% holds, >=20% partly"), llm,
                       Absent("n/a", ref="Fig. 11", paper="0.65 -> 0.02 (7B)"), key=1,
                       plain="Entropy collapses as RL raises accuracy"),
             ClaimSpec(f"accuracy rises while entropy falls ({where})", "Fig. 1, 3",
                       "e.g. 11% -> 25.5% (1.5B)", _drawn("collapse", v, rise), GAIN, llm)]
    if llm:
        specs.append(ClaimSpec("GRPO raises the training reward (LLM; sanity check of the trainer)", "-",
                               "(implicit)", _drawn("collapse", v, reward), GAIN, llm))
    text = "ours >= paper-15pts holds, >= paper/2 partly"
    for i, (frac, pe, pg) in enumerate((("1/12", 0.73, 0.76), ("1/3", 0.94, 0.93))):
        gain_rule = Rule(lambda x, p=pg: x[0] and x[1] >= p - 0.15, lambda x, p=pg: x[0] and x[1] >= p / 2,
                         text, judged=lambda x: not x[0] or is_finite(x[1]))
        specs += [ClaimSpec(f"share of entropy drop in first {frac} of steps ({where})", "§2.3, Fig. 2",
                            pct(pe), _drawn("collapse", v, entropy_share, i),
                            at_least(pe - 0.15, pe / 2, text), llm),
                  ClaimSpec(f"share of accuracy gain in first {frac} of steps ({where})", "§2.3, Fig. 2",
                            pct(pg), _drawn("collapse", v, gain_share, i), gain_rule, llm)]
    return specs


def _law_fit(d, ev=None) -> Measured:
    """Median R² of the fitted groups of a law result (``d`` None: not drawn)."""
    groups = d.fitted if d else []
    r2 = float(np.median([g.fit.r2 for g in groups])) if groups else NAN
    return Measured(r2, f"median R² {num(r2, '.2f')} over {len(groups)} group(s)")


def _law_claims(v: Variant) -> list[ClaimSpec]:
    """§2.2, §2.4, §2.5 (Eq. 6, Figs. 3-5, 7): R = -a exp(H) + b fits, predicts, scales with size."""
    where, llm = WHERE[v], v is LLM

    def forms(d, ev):
        if not (groups := d.fitted):
            return None
        n_exp, gap = sum(g.best_form == "exponential" for g in groups), max(g.aic_gap() for g in groups)
        ours = f"exp best (AIC) in {n_exp}/{len(groups)}; max AIC gap {gap:.1f}"
        return Measured((n_exp, len(groups), gap), ours)

    def scaling(ev):
        sc = ev.figures.law[v].scaling if v in ev.figures.law else None
        r2s = min(sc.r2.values()) if sc else NAN
        return Measured(r2s, f"min R² {num(r2s, '.2f')} (a, b)" if sc else "n/a (< 3 sizes)")

    def prediction(attr):
        def fn(ev):
            x = getattr(p, attr) if (p := ev.figures.prediction.get(v)) else NAN
            return Measured(x, pct(x, 1))
        return fn

    specs = [ClaimSpec(f"R = -a exp(H) + b fits R vs H ({where})", "§2.2, Figs. 3, 4",
                       "\"precisely\" (no R² given)", lambda ev: _law_fit(ev.figures.law.get(v)), R2_LAW,
                       llm, reason=greedy_law_reason if llm else None, key=2,
                       plain="Accuracy is traded for entropy along R = -a exp(H) + b"),
             ClaimSpec(f"exponential form beats linear / power ({where}; beyond the paper)",
                       "docs/theory.md §1.15", "not tested", _drawn("law", v, forms),
                       Rule(lambda x: 2 * x[0] > x[1], lambda x: x[2] < 2,
                            "majority holds; all within 2 AIC partly", judged=lambda x: True), llm)]
    if llm:
        specs.append(ClaimSpec("a, b log-linear in model size (LLM)", "§2.5, Fig. 7", "smooth log-linear",
                               scaling, R2_LAW, llm))
    return specs + [
        ClaimSpec(f"early fit predicts later accuracy: RMSE ({where})", "§2.4, Fig. 5",
                  "0.9% math / 1.2% code", prediction("mean_rmse"), PREDICTION, llm,
                  reason=lambda ev: prediction_reason(ev, v)),
        ClaimSpec(f"early fit: error at final step ({where})", "§2.4", "0.5% math / 1.9% code",
                  prediction("mean_final_error"), PREDICTION, llm,
                  reason=lambda ev: prediction_reason(ev, v))]


def _cov_claims(kind: str, where: str) -> list[ClaimSpec]:
    """§3.3, Fig. 8 left: the batch covariance (token-level Eq. 10, and the paper's response-level Eqs. 8-9
    where recorded) tracks −dH step by step and stays positive."""
    llm = kind == "llm"

    def first(ev):
        return ev.figures.covariance.first(kind) if ev.figures.covariance else None

    def token(ev):
        if (r := first(ev)) is None:
            return Measured(None, "n/a")
        lo, hi = r.pearson_raw_ci
        resp = (f"; response-level Eq. 8: raw r {num(r.response_pearson_raw, '.2f')}"
                if r.cov_response is not None else "")
        ours = (f"raw per-step r {num(r.pearson_raw, '.2f')} [{num(lo, '.2f')}, {num(hi, '.2f')}] "
                f"(9-step smoothed r {num(r.pearson, '.2f')}){resp}")
        return Measured((r.pearson_raw, lo), ours)

    def response(ev):
        if (r := first(ev)) is None:
            return Measured(None, "n/a")
        if r.cov_response is None:
            what = "`cov/response_eq8`" if llm else "`cov_eq8`"
            return Measured(None, f"not measured (the run does not log {what})", explained=True)
        lo, hi = r.response_pearson_raw_ci
        return Measured((r.response_pearson_raw, lo),
                        f"raw per-step r {num(r.response_pearson_raw, '.2f')} [{num(lo, '.2f')}, "
                        f"{num(hi, '.2f')}] (smoothed {num(r.response_pearson, '.2f')}); Cov > 0 on "
                        f"{pct(r.response_positive_share)} of steps")

    def positive(ev):
        return Measured(x := (r.cov_positive_share if (r := first(ev)) else NAN), f"{pct(x)} of steps")

    return [ClaimSpec(f"Cov and -dH have similar dynamics ({where})", "§3.3, Fig. 8 left, Eq. 10",
                      "\"highly similar\"", token, COV_DYNAMICS, llm,
                      reason=decomposition_reason if llm else None, key=3,
                      plain="The covariance of log-probability and advantage drives the entropy change"),
            ClaimSpec(f"response-level Cov (Eqs. 8-9) and -dH have similar dynamics ({where})",
                      "§3.3, Fig. 8 left, Eqs. 8-9", "\"highly similar\"", response, COV_DYNAMICS, llm,
                      reason=decomposition_reason if llm else None),
            ClaimSpec(f"Cov stays positive ({where})", "§3.3", "positive throughout", positive,
                      at_least(0.9, 0.7, ">= 90% holds"), llm)]


def _by_accuracy(ev) -> Measured:
    """Fig. 8 right: mean covariance of the low / mid / high accuracy bins."""
    cov = ev.figures.covariance
    means = [b.mean if b.n else NAN for b in cov.by_accuracy.bins.values()] if cov else []
    if len(means) == 3 and all(is_finite(x) for x in means):
        lo, mid, hi = means
        return Measured((lo, mid, hi), f"low {lo:.3g} / mid {mid:.3g} / high {hi:.3g}")
    return Measured(None, "n/a")


def _top_ratio(t1, n_states: float) -> Measured:
    """Table 1: mean covariance of the top 0.2% tokens over that of the top 50% of ``n_states`` token
    states; not measured when the top-0.2% group holds fewer than ``MIN_GROUP_STATES`` states."""
    k = top_group_size(max(1, int(n_states)), 0.2) if is_finite(n_states) else 0
    if k < MIN_GROUP_STATES:
        return Measured(None, f"n/a: the top 0.2% is {k} of {num(n_states, '.0f')} token states "
                              f"(< {MIN_GROUP_STATES}, too few states)", explained=True)
    ratio = t1[1] / t1[4] if t1[4] > 0 else NAN
    return Measured(ratio, f"{num(t1[1])} / {num(t1[4])} = {num(ratio, '.1f')}x ({k} states in the top 0.2%)")


def _method_claims(v: Variant) -> list[ClaimSpec]:
    """§4.3, Table 2, Fig. 11: Clip-Cov / KL-Cov keep entropy up and improve accuracy over GRPO."""
    where, llm = WHERE[v], v is LLM

    def pair(ev, name):  # (stats of method ``name``, stats of GRPO), None where absent
        ms = ev.figures.methods[v].methods if v in ev.figures.methods else {}
        return ms.get(name), ms.get("grpo")

    def frac(o, name):  # the token fraction used, next to the paper's (Cov methods only)
        pool = "prompt" if v is SIM else "update"
        return f"; {fraction_text(name, o.params, o.tokens, pool)}" if o and name in PAPER_FRACTIONS else ""

    def ratio(name, series):  # final ``series`` of ``name`` over GRPO's
        def fn(ev):
            o, g = pair(ev, name)
            b = getattr(g, series).final.mean if g else NAN
            x = getattr(o, series).final.mean / b if (o and g and is_finite(b) and b > 0) else NAN
            return Measured(x, f"{num(x, '.2f')}x" + (frac(o, name) if series == "entropy" else ""))
        return fn

    def gain(name):
        def fn(ev):
            o, g = pair(ev, name)
            if not (o and g):
                return Measured(None, "n/a")
            (mo, ho, _), (mg, hg, _) = o.acc.final, g.acc.final
            diff, half = mo - mg, math.sqrt(ho**2 + hg**2) if is_finite(ho) and is_finite(hg) else NAN
            ci = f" ± {100 * half:.1f}" if is_finite(half) else " (1 seed)"
            return Measured((diff, half), f"{100 * diff:+.1f} pts{ci}{frac(o, name)}")
        return fn

    ci_rule = Rule(lambda x: x[0] > 0 and is_finite(x[1]) and x[0] > x[1], lambda x: x[0] > 0,
                   "> 0 with 95% CI excluding 0 holds, > 0 partly", judged=lambda x: is_finite(x[0]))
    specs = []
    for name, paper_ratio, paper_acc in (("kl_cov", "> 10x (0.2 vs 0.02)", "+2.0 (7B), +6.4 (32B)"),
                                         ("clip_cov", "~4-7x (0.08-0.15 vs 0.02)", "+1.8 (7B), +4.5 (32B)")):
        plain = "KL-Cov" if name == "kl_cov" else "Clip-Cov"
        specs += [ClaimSpec(f"{name} keeps entropy above GRPO ({where})", "§4.3, Fig. 11", paper_ratio,
                            ratio(name, "entropy"),
                            Rule(lambda x: x >= 3, lambda x: x > 1.2, ">= 3x holds, > 1.2x partly"), llm,
                            reason=lambda ev, n=name: method_entropy_reason(ev, v, n),
                            key=4 if name == "kl_cov" else 6,
                            plain=f"{plain} keeps entropy above GRPO's"),
                  ClaimSpec(f"{name} improves accuracy over GRPO ({where})", "Table 2", paper_acc, gain(name),
                            ci_rule, llm, reason=lambda ev, n=name: method_gain_reason(ev, v, n),
                            key=5 if name == "kl_cov" else 7,
                            plain=f"{plain} ends with higher accuracy than GRPO")]
    if llm:
        specs.append(ClaimSpec("longer responses under kl_cov than GRPO (LLM)", "Fig. 11",
                               "~1700 vs ~1000 tokens (1.7x)", ratio("kl_cov", "resp_len"),
                               Rule(lambda x: x >= 1.1, lambda x: x > 1.0, ">= 1.1x holds, > 1 partly"), llm,
                               reason=response_length_reason))
    return specs


def _sweep(sweep: str, judged_value):
    """Figs. 9, 10: the largest setting of an LLM sweep against its baseline (None: fewer than 2 runs)."""
    def fn(ev):
        d = ev.figures.sweep(sweep)
        if d is None or len(d.values) < 2:
            return None
        base, top = d.values[0], d.values[-1]
        ratio = top.final_entropy / base.final_entropy if base.final_entropy > 0 else NAN
        acc = top.final_acc - base.final_acc
        ours = f"{d.knob}={top.value:g}: entropy {num(ratio, '.2f')}x, acc {100 * acc:+.1f} pts vs 0"
        return Measured(judged_value(ratio, acc), ours)
    return fn


def _theory(ev, kind: str | None = None) -> float:
    """First-order error slope (``kind`` None) or the first ``kind`` run's predicted-vs-observed r."""
    th = ev.figures.theory
    if th is None or kind is None:
        return th.step_size.slope if th and th.step_size else NAN
    return r.pearson if (r := th.first(kind)) else NAN


def _verify(ev) -> Measured | None:
    n_ok, n = sum(r.passed for r in ev.verify_rows), len(ev.verify_rows)
    return Measured((n_ok, n), f"{n_ok}/{n} checks pass") if n else None


# ----------------------------------------------------------------------------- the claims

CLAIMS: tuple[ClaimSpec, ...] = (
    *_collapse_claims(LLM), *_collapse_claims(SIM),
    ClaimSpec("greedy accuracy (the paper's R) rises while entropy falls (LLM)", "Fig. 1",
              "e.g. 11% -> 25.5% (1.5B)", _drawn("collapse", Variant.GREEDY, _acc_rise), GAIN, llm=True),
    ClaimSpec("accuracy of T=1 samples rises while entropy falls (LLM)", "Fig. 1", "(greedy in paper)",
              _drawn("collapse", Variant.T1, _acc_rise), GAIN, llm=True),
    *_law_claims(LLM),
    *(ClaimSpec(f"R = -a exp(H) + b fits R vs H, R = {what} accuracy (LLM)", "§2.2", paper,
                _drawn("law", v, lambda d, ev: _law_fit(d) if d.fitted else None), R2_LAW, llm=True)
      for v, what, paper in ((Variant.GREEDY, "greedy", "\"precisely\" (no R² given)"),
                             (Variant.T1, "T=1", "(greedy in paper)"))),
    *_law_claims(SIM), *_cov_claims("llm", "LLM"), *_cov_claims("sim", "tabular LM"),
    ClaimSpec("easier prompts have higher Cov (tabular LM)", "Fig. 8 right", "0.875 > 0.5 > 0.125",
              _by_accuracy,
              Rule(lambda x: x[2] > x[1] > x[0], lambda x: x[2] > x[0], "ordered holds, high > low partly",
                   judged=lambda x: True)),  # None when a bin is empty
    ClaimSpec("a few tokens carry extreme Cov: top-0.2% / top-50% mean (tabular LM)", "Table 1",
              "3.112 / 0.152 = 20x",
              lambda ev: None if ev.table1 is None else _top_ratio(ev.table1.mean_cov, ev.table1.n_tokens),
              EXTREME_COV),
    *_method_claims(LLM), *_method_claims(SIM),
    ClaimSpec("entropy bonus is hard to tune: large coef explodes entropy (LLM)", "Figs. 9, 10",
              "entropy up to ~5 at 0.01 (Fig. 9)", _sweep("entropy_coef", lambda ratio, acc: ratio),
              Rule(lambda x: x >= 2, lambda x: x > 1.2, SWEEP_RULE), llm=True, absent=NO_SWEEP),
    ClaimSpec("reference KL holds entropy up but not accuracy (LLM)", "Figs. 9, 10",
              "higher entropy, lower acc (Fig. 10)", _sweep("ref_kl_coef", lambda ratio, acc: (ratio, acc)),
              Rule(lambda x: x[0] > 1 and x[1] < 0, lambda x: x[0] > 1, SWEEP_RULE, judged=lambda x: True),
              llm=True, absent=NO_SWEEP),
    ClaimSpec("predicted vs observed dH per step (LLM)", "Thm. 1/2", "dH ~ -eta Cov (Thm. 2)",
              lambda ev: Measured(x := _theory(ev, "llm"), f"Pearson r {num(x, '.2f')}"),
              at_least(0.5, 0.1, "r >= 0.5 holds, >= 0.1 partly"), llm=True, reason=decomposition_reason),
    *DYNAMICS_CLAIMS,
    ClaimSpec("a few tokens carry extreme Cov: top-0.2% / top-50% mean (LLM)", "Table 1",
              "3.112 / 0.152 = 20x",
              lambda ev: _top_ratio((r := ev.figures.dynamics.runs[0]).table1, r.n_states_first)
              if ev.figures.dynamics and ev.figures.dynamics.runs else None, EXTREME_COV, llm=True),
    ClaimSpec("first-order error is O(eta^2) (simulator; beyond the paper)", "Lemma 1, docs/theory.md §1.5",
              "slope 2 (implied)", lambda ev: Measured(x := _theory(ev), f"slope {num(x, '.2f')}"),
              Rule(lambda x: abs(x - 2) <= 0.2, lambda x: abs(x - 2) <= 0.5, "|slope-2| <= 0.2 holds"),
              check=True),
    ClaimSpec("theorems and lemmas hold numerically", "§3, App. E", "proofs", _verify,
              Rule(lambda x: x[0] == x[1], lambda x: False, "all pass", judged=lambda x: True), check=True),
)
"""every claim, in table order"""


def claim_rows(results: FigureResults, verify_rows=None, table1: Table1Result | None = None,
               profile: str = "") -> list[ClaimRow]:
    """The row of every claim of :data:`CLAIMS` that applies. LLM rows use ``results.llm_score``
    (:func:`figures.draw.choose_llm_score`); with ``profile="quick"``, LLM rows without data say "not
    measured in quick" (their runs are in ``--profile full``)."""
    ev = Evidence(results, tuple(verify_rows or ()), table1)
    return [r for r in (spec.row(ev, profile) for spec in CLAIMS) if r is not None]
