"""The entropy-dynamics claims of :mod:`reproduce.claims`: what each token state's entropy change is made
of on the LLM (the decomposition of ``llm_rl.diagnostics.summarize_run(...)["decomposition"]``), the
theorems against the observed change (LLM and tabular LM), and the numerical checks that are identities
or Taylor expansions rather than evidence for the paper (``check=True``: reported apart, not counted).

Every graded row judges a prediction against the observed ΔH so that a sign-flipped, shuffled or random
prediction fails it: the theorems' η is the optimizer's (SGD) or fitted with η >= 0, and the rules ask
for a Pearson interval above 0 and a positive R² (tests/test_claims_dynamics.py).
"""

from __future__ import annotations

import numpy as np

from .claim_rules import NAN, ClaimSpec, Evidence, Measured, Rule, at_least, is_finite, num, pct
from .reasons import decomposition_reason

THEOREM = Rule(lambda x: x[0] >= 0.5 and x[1] >= 0.7 and x[2] > 0, lambda x: x[0] > 0.1 and x[2] > 0,
               "R² >= 0.5, sign >= 70%, r's 95% CI above 0 holds; R² > 0.1 and CI above 0 partly",
               judged=lambda x: all(is_finite(v) for v in x))
"""(R² with η from the optimizer or fitted >= 0, sign accuracy, lower end of Pearson r's 95% CI)"""
OWN_SHARE = Rule(lambda x: x[0] >= 0.5 and x[1] >= 0.3, lambda x: x[0] >= 0.3 and x[1] > 0,
                 "own share >= 50% and own-term R² >= 0.3 holds; >= 30% and R² > 0 partly",
                 judged=lambda x: all(is_finite(v) for v in x))
"""(own-state share of the entropy change, R² of the own term as is against the observed change)"""
LINEARISED = at_least(0.9, 0.5, "R² >= 0.9 holds, >= 0.5 partly")
IDENTITY = at_least(0.9, 0.5, "R² >= 0.9 passes (an identity: not evidence)")
NOT_DECOMPOSED = "not measured (diagnosed before the decomposition existed: rerun with --diagnose-every)"


def decompositions(ev: Evidence) -> list[dict] | None:
    """The ``decomposition`` dicts of the diagnosed LLM runs that have one (None: no diagnosed run)."""
    runs = ev.figures.dynamics.runs if ev.figures.dynamics else ()
    return [r.summary["decomposition"] for r in runs if "decomposition" in r.summary] if runs else None


def _median(ds: list[dict], term: str, key: str, i: int | None = None) -> float:
    vals = [d[term][key] if i is None else d[term][key][i] for d in ds if term in d and key in d[term]]
    vals = [float(v) for v in vals if is_finite(v)]
    return float(np.median(vals)) if vals else NAN


def _ci(ds, term, key) -> str:
    lo, hi = _median(ds, term, key + "_ci", 0), _median(ds, term, key + "_ci", 1)
    return f"[{num(lo, '.2f')}, {num(hi, '.2f')}]"


def _decomposed(measure):
    """A claim's measure from the runs' decompositions: None without diagnosed runs, "not measured" when
    none of them has a decomposition, else ``measure(decompositions)``."""
    def fn(ev):
        ds = decompositions(ev)
        if ds is None:
            return None
        return measure(ds) if ds else Measured(None, NOT_DECOMPOSED, explained=True)
    return fn


def _theorem(term: str):
    @_decomposed
    def fn(ds):
        r2, sign, lo = (_median(ds, term, "r2"), _median(ds, term, "sign_acc"),
                        _median(ds, term, "corr_ci", 0))
        eta = ds[0].get(term, {}).get("eta_source", "?")
        corr = _median(ds, term, "corr")
        return Measured((r2, sign, lo), f"R² {num(r2, '.2f')} {_ci(ds, term, 'r2')}, sign right {pct(sign)} "
                                        f"{_ci(ds, term, 'sign_acc')}, r {num(corr, '.2f')} "
                                        f"{_ci(ds, term, 'corr')}; η: {eta} ({len(ds)} run(s), median)")
    return fn


@_decomposed
def _own_share(ds):
    own, cross, hist = (_median(ds, t, "share") for t in ("own", "cross", "history"))
    r2, sign = _median(ds, "own", "r2"), _median(ds, "own", "sign_acc")
    return Measured((own, r2), f"own {pct(own)} / cross {pct(cross)} / history {pct(hist)} of the summed "
                               f"|terms|; own term alone: R² {num(r2, '.2f')} {_ci(ds, 'own', 'r2')}, sign "
                               f"right {pct(sign)}")


@_decomposed
def _linearised(ds):
    r2 = _median(ds, "linearised", "r2")
    return Measured(r2, f"R² {num(r2, '.3f')} {_ci(ds, 'linearised', 'r2')}, sign right "
                        f"{pct(_median(ds, 'linearised', 'sign_acc'))}")


def _dyn_median(ev, key: str) -> float:
    runs = ev.figures.dynamics.runs if ev.figures.dynamics else ()
    vals = [r.summary[key] for r in runs if is_finite(r.summary.get(key))]
    return float(np.median(vals)) if vals else NAN


def _lemma1(ev):
    if not (ev.figures.dynamics and ev.figures.dynamics.runs):
        return None
    r2, sign = _dyn_median(ev, "median_r2_first"), _dyn_median(ev, "median_sign_acc_first")
    return Measured(r2, f"median R² {num(r2, '.4f')}, sign right {pct(sign, 0)} "
                        f"({len(ev.figures.dynamics.runs)} run(s)); a random Δz fits as well")


def _sim_theorem(part: str):
    def fn(ev):
        th = ev.figures.theory
        t = th.theorem[0] if th and th.theorem else None
        if t is None:
            return None
        a = getattr(t, part)
        ours = (f"{t.rule}: R² {num(a.r2, '.2f')} [{num(a.r2_ci[0], '.2f')}, {num(a.r2_ci[1], '.2f')}], sign "
                f"right {pct(a.sign_acc)}, r {num(a.corr, '.2f')} [{num(a.corr_ci[0], '.2f')}, "
                f"{num(a.corr_ci[1], '.2f')}]; η: {t.eta_source} (n={a.n})")
        return Measured((a.r2, a.sign_acc, a.corr_ci[0]), ours)
    return fn


DYNAMICS_CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec("Theorem 1 predicts each token state's dH (LLM; beyond the paper)",
              "Thm. 1, docs/theory.md §1.6",
              "(checked only as curve shapes, Fig. 8)", _theorem("theorem"), THEOREM, llm=True,
              reason=decomposition_reason),
    ClaimSpec("Theorem 2 (natural-gradient) reading of each state's dH (LLM; beyond the paper)",
              "Thm. 2, docs/theory.md §1.7", "(checked only as curve shapes, Fig. 8)", _theorem("theorem2"),
              THEOREM, llm=True, reason=decomposition_reason),
    ClaimSpec("a state's entropy change comes from its own tokens' updates, not other states' (LLM)",
              "§3.2 (the mechanism), docs/theory.md §1.17", "(assumed: tabular theory)", _own_share,
              OWN_SHARE, llm=True, reason=decomposition_reason),
    ClaimSpec("Theorem 1 predicts each state's dH (tabular LM)", "Thm. 1/2", "exact for the PG step",
              _sim_theorem("per_state"), THEOREM),
    ClaimSpec("Theorem 1 predicts the per-step dH (tabular LM)", "Thm. 1/2", "exact for the PG step",
              _sim_theorem("per_step"), THEOREM),
    # numerical checks: identities and Taylor expansions, not evidence for the paper's mechanism
    ClaimSpec("linearised network change predicts each state's dH (LLM)", "docs/theory.md §1.17", "-",
              _linearised, LINEARISED, llm=True, check=True),
    ClaimSpec("Lemma 1 on the measured logit change gives each state's dH (LLM; identity check)", "Lemma 1",
              "(an identity)", _lemma1, IDENTITY, llm=True, check=True),
)
"""the dynamics rows, in table order"""
