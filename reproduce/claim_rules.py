"""How a claim of the paper is declared and graded: the verdicts, the :class:`Rule` that turns a measured
value into one, the :class:`ClaimSpec` that declares a claim once and the :class:`ClaimRow` it yields.
The claims themselves are declared in :mod:`reproduce.claims`; :func:`summarize` counts the verdicts and
picks the findings the report's summary states, by the rule :data:`SUMMARY_RULE`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from figures.fig_covariance import Table1Result
from figures.results import FigureResults

HOLDS, PARTLY, FAILS, NA = "holds", "partly", "does not hold", "not measured"
VERDICTS = (HOLDS, PARTLY, FAILS, NA)
"""every verdict, in the order the summary counts them"""
NOT_IN_QUICK = "not measured in quick (runs in --profile full)"
"""what an LLM claim without data says under ``--profile quick`` (its runs are in ``--profile full``)"""
NAN = float("nan")


def is_finite(x) -> bool:
    """True for a real, finite number (None, NaN, inf and non-numbers are not)."""
    return x is not None and isinstance(x, (int, float, np.floating)) and math.isfinite(float(x))


def grade(x, holds_if, partly_if) -> str:
    """Verdict for a number: ``holds_if(x)`` -> holds, ``partly_if(x)`` -> partly, else does not hold."""
    if not is_finite(x):
        return NA
    return HOLDS if holds_if(x) else PARTLY if partly_if(x) else FAILS


def pct(x, digits: int = 0) -> str:
    """``0.731`` -> ``"73%"``; non-finite -> ``"n/a"``."""
    return f"{100 * x:.{digits}f}%" if is_finite(x) else "n/a"


def num(x, fmt: str = ".3g") -> str:
    return format(float(x), fmt) if is_finite(x) else "n/a"


def finite_mean(xs):
    """Mean of the finite values of ``xs`` (NaN when there are none)."""
    xs = [x for x in xs if is_finite(x)]
    return float(np.mean(xs)) if xs else NAN


@dataclass(frozen=True)
class Evidence:
    """Everything a claim is measured from (``verify_rows``: ``theory.verify.run_checks`` rows)."""

    figures: FigureResults
    verify_rows: tuple = ()
    table1: Table1Result | None = None


@dataclass(frozen=True)
class Measured:
    """Our measurement of a claim: the value its rule judges (a number or a tuple) and its text;
    ``explained``: ``ours`` says why the claim is not measured (kept under ``--profile quick`` instead of
    :data:`NOT_IN_QUICK`)."""

    value: Any
    ours: str
    explained: bool = False


@dataclass(frozen=True)
class Rule:
    """How a measured value is graded: ``holds(value)`` -> holds, else ``partly(value)`` -> partly, else
    does not hold; "not measured" when ``value`` is None or ``judged(value)`` is false. Without
    ``judged``, the value is one number graded by :func:`grade` (not finite: not measured). ``text``
    states the thresholds."""

    holds: Callable[[Any], bool]
    partly: Callable[[Any], bool]
    text: str
    judged: Callable[[Any], bool] | None = None

    def verdict(self, value) -> str:
        if value is None or self.judged is None:
            return NA if value is None else grade(value, self.holds, self.partly)
        if not self.judged(value):
            return NA
        return HOLDS if self.holds(value) else PARTLY if self.partly(value) else FAILS


def at_least(holds: float, partly: float, text: str) -> Rule:  # x >= holds: holds, x >= partly: partly
    return Rule(lambda x: x >= holds, lambda x: x >= partly, text)


@dataclass(frozen=True)
class Absent:
    """The row a claim shows when its figure was not drawn (``ref`` / ``paper`` None: the claim's)."""

    ours: str
    rule: str = ""
    ref: str | None = None
    paper: str | None = None


@dataclass(frozen=True)
class ClaimRow:
    """One row of the claims table: the claim, where in the paper (section, figure, table, equation),
    the paper's number and ours (text), the verdict (:data:`HOLDS`, :data:`PARTLY`, :data:`FAILS` or
    :data:`NA`) and a note: the rule's thresholds (the table's ``rule`` column); ``reason``: the likely
    reason a claim does not (fully) hold, stated only when the data shows it (else ""); ``key`` and
    ``plain``: the claim's key finding (0: none) and its statement in plain words."""

    claim: str
    ref: str
    paper: str
    ours: str
    verdict: str
    note: str
    reason: str = ""
    key: int = 0
    plain: str = ""
    check: bool = False
    """a numerical check (an identity or Taylor expansion), not evidence for the paper: the report lists
    it apart and :func:`summarize` does not count it"""


@dataclass(frozen=True)
class ClaimSpec:
    """One claim, declared once: ``measure`` gives ours from the evidence (None when the figure behind
    it was not drawn: then the row is ``absent``'s, or left out when ``absent`` is None) and ``rule``
    grades it. ``llm``: a claim about LLM runs (ungraded under ``--profile quick``, it says
    :data:`NOT_IN_QUICK`). ``reason``: the likely reason when the verdict is partly or does not hold, from
    the evidence (None when the data does not show one). ``key`` > 0 marks one of the paper's key findings
    (1 = the most important; an LLM claim and its tabular-LM twin share it) for :func:`summarize`, and
    ``plain`` states it in plain words."""

    claim: str
    ref: str
    paper: str
    measure: Callable[[Evidence], Measured | None]
    rule: Rule
    llm: bool = False
    absent: Absent | None = None
    reason: Callable[[Evidence], str | None] | None = field(default=None, compare=False)
    key: int = 0
    plain: str = ""
    check: bool = False
    """a numerical check, not a claim (see :attr:`ClaimRow.check`)"""

    def row(self, ev: Evidence, profile: str = "") -> ClaimRow | None:
        """This claim's row for ``ev`` (None when it is left out)."""
        m, a = self.measure(ev), self.absent
        if m is not None:
            row = ClaimRow(self.claim, self.ref, self.paper, m.ours, self.rule.verdict(m.value),
                           self.rule.text)
        elif a is not None:
            row = ClaimRow(self.claim, a.ref or self.ref, a.paper or self.paper, a.ours, NA, a.rule)
        else:
            return None
        quick_na = profile == "quick" and self.llm and row.verdict == NA and not (m and m.explained)
        why = self.reason(ev) if self.reason is not None and row.verdict in (PARTLY, FAILS) else None
        row = replace(row, reason=why or "", key=self.key, plain=self.plain, check=self.check)
        return replace(row, ours=NOT_IN_QUICK) if quick_na else row


SUMMARY_RULE = ("the first three of the paper's key findings (declared in order of importance in "
                "`reproduce/claims.py`) that our runs measured, each from its LLM row when that was "
                "measured, else from its tabular-LM row")
"""how :func:`summarize` picks the findings the summary states (the report quotes it)"""


@dataclass(frozen=True)
class Summary:
    """The report's summary: how many rows got each verdict (:data:`VERDICTS` order) and the key findings
    picked by :data:`SUMMARY_RULE`."""

    counts: dict[str, int]
    findings: tuple[ClaimRow, ...]


def summarize(rows: list[ClaimRow], n_findings: int = 3) -> Summary:
    """Verdict counts of the claim rows of ``rows`` (numerical checks, :attr:`ClaimRow.check`, are not
    counted) and the first ``n_findings`` measured key findings (:data:`SUMMARY_RULE`):
    for each key 1, 2, ... the first row in table order with that key and a verdict other than
    :data:`NA` (the LLM row precedes its tabular-LM twin in :data:`reproduce.claims.CLAIMS`)."""
    if n_findings < 0:
        raise ValueError(f"n_findings must be >= 0, got {n_findings}")
    bad = {r.verdict for r in rows} - set(VERDICTS)
    if bad:
        raise ValueError(f"unknown verdict(s) {sorted(bad)}; expected one of {VERDICTS}")
    rows = [r for r in rows if not r.check]
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    firsts: dict[int, ClaimRow] = {}
    for r in rows:
        if r.key > 0 and r.verdict != NA:
            firsts.setdefault(r.key, r)
    return Summary(counts, tuple(firsts[k] for k in sorted(firsts)[:n_findings]))
