"""Symbolic derivations (sympy) of the paper's identities for an n-action softmax, n = 2..4.

Each identity is built as ``lhs − rhs`` from first principles — the entropy written out as
H = −Σ π_a log π_a with π = exp(z)/Σ exp(z), differentiated by sympy — and simplified to zero.
To keep simplification exact and fast, exp(z_a) is replaced by a positive symbol x_a and
log Σ_b x_b by a symbol L after differentiation; what remains is a rational function whose
numerator must cancel.

Identities (each returns the simplified difference; 0 means proven for that n):
  * gradient:      ∂H/∂z_j = −π_j (log π_j + H)                               (docs/theory.md §1.1)
  * lemma1:        Σ_j ∂H/∂z_j d_j = −Cov_π(log π, d)                          (paper Lemma 1)
  * second_order:  d²/dt² H(z + t d)|₀ = −Var_π(d) − E_π[(log π + H)(d − E_π d)²] (docs/theory.md §1.4)
  * proposition1:  ∂/∂z_j Σ_a π_a r_a = π_j (r_j − E_π r)                      (paper Prop. 1)
  * npg:           F r = ∇_z E_π r with F = diag π − π πᵀ, so F⁺∇J = r + c·1   (paper Thm. 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp


@dataclass(frozen=True)
class SymbolicCheck:
    """Outcome of one identity at one n: ``difference`` is the simplified lhs − rhs."""

    name: str
    reference: str
    n: int
    statement: sp.Expr
    difference: sp.Expr

    @property
    def holds(self) -> bool:
        return self.difference == 0


_z, _d, _r, _p = (sp.IndexedBase(c) for c in ("z", "d", "r", "pi"))
_j, _a, _b = sp.symbols("j a b", integer=True)
_n, _H, _t = sp.Symbol("n", integer=True), sp.Symbol("H"), sp.Symbol("t")


def _E(expr, idx=_a):
    """E_π[expr] written as Σ_a π_a expr (display only)."""
    return sp.Sum(_p[idx] * expr, (idx, 1, _n))


_STATEMENTS = {
    "gradient": sp.Eq(sp.Derivative(_H, _z[_j]), -_p[_j] * (sp.log(_p[_j]) + _H)),
    "lemma1": sp.Eq(sp.Sum(sp.Derivative(_H, _z[_j]) * _d[_j], (_j, 1, _n)),
                    -_E((sp.log(_p[_a]) + _H) * (_d[_a] - _E(_d[_b], _b)))),
    "second_order": sp.Eq(sp.Derivative(sp.Function("H")(_t), (_t, 2)).subs(_t, 0),
                          -_E((_d[_a] - _E(_d[_b], _b)) ** 2)
                          - _E((sp.log(_p[_a]) + _H) * (_d[_a] - _E(_d[_b], _b)) ** 2)),
    "proposition1": sp.Eq(sp.Derivative(_E(_r[_a]), _z[_j]), _p[_j] * (_r[_j] - _E(_r[_a]))),
    "npg": sp.Eq(sp.Sum((sp.KroneckerDelta(_j, _a) * _p[_j] - _p[_j] * _p[_a]) * _r[_a], (_a, 1, _n)),
                 sp.Derivative(_E(_r[_a]), _z[_j])),
}


class _Softmax:
    def __init__(self, n: int):
        if not 2 <= n <= 6:
            raise ValueError(f"n must be in [2, 6], got {n}")
        self.n = n
        self.z = sp.symbols(f"z0:{n}", real=True)
        self.d = sp.symbols(f"d0:{n}", real=True)
        self.r = sp.symbols(f"r0:{n}", real=True)
        self.t = sp.Symbol("t", real=True)
        self.x = sp.symbols(f"x0:{n}", positive=True)
        self.L = sp.Symbol("L", real=True)
        s = sum(sp.exp(zi) for zi in self.z)
        self.pi = [sp.exp(zi) / s for zi in self.z]
        self.logpi = [zi - sp.log(s) for zi in self.z]
        self.H = -sum(p * lp for p, lp in zip(self.pi, self.logpi))

    def reduce(self, expr: sp.Expr) -> sp.Expr:
        """Replace exp(z_a) → x_a and log Σ x → L, then cancel to a canonical rational form."""
        expr = expr.subs({sp.exp(zi): xi for zi, xi in zip(self.z, self.x)})
        expr = expr.subs(sp.log(sum(self.x)), self.L)
        # any z_a left outside exp() is log x_a
        expr = expr.subs({zi: sp.log(xi) for zi, xi in zip(self.z, self.x)})
        return sp.cancel(sp.expand(sp.expand_log(expr, force=True)))

    def expect(self, f):
        return sum(p * fi for p, fi in zip(self.pi, f))

    def cov(self, f, g):
        ef, eg = self.expect(f), self.expect(g)
        return self.expect([(fi - ef) * (gi - eg) for fi, gi in zip(f, g)])


def _gradient(s: _Softmax):
    diffs = [sp.diff(s.H, s.z[j]) + s.pi[j] * (s.logpi[j] + s.H) for j in range(s.n)]
    return sum(d * d for d in (s.reduce(x) for x in diffs))


def _lemma1(s: _Softmax):
    lhs = sum(sp.diff(s.H, s.z[j]) * s.d[j] for j in range(s.n))
    rhs = -s.cov(s.logpi, s.d)
    return s.reduce(lhs - rhs)


def _second_order(s: _Softmax):
    shifted = s.H.subs({zi: zi + s.t * di for zi, di in zip(s.z, s.d)}, simultaneous=True)
    lhs = sp.diff(shifted, s.t, 2).subs(s.t, 0)
    ed = s.expect(s.d)
    rhs = -s.cov(s.d, s.d) - s.expect([(lp + s.H) * (di - ed) ** 2 for lp, di in zip(s.logpi, s.d)])
    return s.reduce(lhs - rhs)


def _proposition1(s: _Softmax):
    j_fn = s.expect(s.r)
    er = s.expect(s.r)
    diffs = [sp.diff(j_fn, s.z[j]) - s.pi[j] * (s.r[j] - er) for j in range(s.n)]
    return sum(d * d for d in (s.reduce(x) for x in diffs))


def _npg(s: _Softmax):
    j_fn = s.expect(s.r)
    fisher_r = [s.pi[i] * s.r[i] - s.pi[i] * sum(s.pi[k] * s.r[k] for k in range(s.n)) for i in range(s.n)]
    diffs = [fisher_r[i] - sp.diff(j_fn, s.z[i]) for i in range(s.n)]
    ones = [sum(s.pi[i] * (1 if i == k else 0) - s.pi[i] * s.pi[k] for k in range(s.n)) for i in range(s.n)]
    return sum(d * d for d in (s.reduce(x) for x in diffs + ones))


IDENTITIES: dict[str, tuple[str, Callable]] = {
    "gradient": ("docs/theory.md §1.1", _gradient),
    "lemma1": ("Lemma 1", _lemma1),
    "second_order": ("docs/theory.md §1.4", _second_order),
    "proposition1": ("Proposition 1", _proposition1),
    "npg": ("Theorem 2", _npg),
}


def check_identity(name: str, n: int) -> SymbolicCheck:
    """Derive identity ``name`` for an ``n``-action softmax and simplify lhs − rhs."""
    if name not in IDENTITIES:
        raise ValueError(f"unknown identity {name!r}; choose one of {sorted(IDENTITIES)}")
    ref, fn = IDENTITIES[name]
    diff = fn(_Softmax(n))
    return SymbolicCheck(name, ref, n, _STATEMENTS[name], sp.simplify(diff))


def check_all(ns=(2, 3, 4)) -> list[SymbolicCheck]:
    """Every identity for every n in ``ns``."""
    return [check_identity(name, n) for name in IDENTITIES for n in ns]
