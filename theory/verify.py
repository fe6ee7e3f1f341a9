"""Check every statement of ``theory`` numerically on seeded random
float64 instances (and, with ``--symbolic``, derive the core identities with sympy).

Each row reports the worst case over the instances against a tolerance or a proven bound; the
command exits non-zero on any FAIL. This is the first thing a newcomer runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .covariance import covariance_decomposition, token_covariance
from .entropy_dynamics import (entropy_change, entropy_gradient, first_order_entropy_change,
                               first_order_error_bound, second_order_entropy_change)
from .kl import categorical_kl
from .softmax import entropy, log_policy, policy_covariance
from .updates import (expected_sampled_entropy_change, npg_logit_step, pg_logit_step,
                      predicted_entropy_change, sample_entropy_contribution, sampled_logit_step)

F64 = torch.float64


@dataclass
class Row:
    statement: str
    reference: str
    instances: int
    max_error: float
    bound: str
    passed: bool


def _instance(gen: torch.Generator, n_max: int = 32):
    n = int(torch.randint(2, n_max + 1, (1,), generator=gen))
    sigma = float(torch.empty(1).uniform_(0.05, 6.0, generator=gen))
    z = sigma * torch.randn(n, generator=gen, dtype=F64)
    a = torch.empty(n, dtype=F64).uniform_(-5, 5, generator=gen)
    return z, a


def _fisher(z):
    pi = torch.softmax(z, -1)
    return torch.diag(pi) - torch.outer(pi, pi)


# --- one function per statement: (gen, k) -> (max error, threshold, how the threshold is read) ----------

def _gradient(gen, k):
    err, h = 0.0, 1e-6
    for _ in range(k):
        z, _ = _instance(gen)
        eye = torch.eye(z.numel(), dtype=F64)
        fd = torch.stack([(entropy(z + h * e) - entropy(z - h * e)) / (2 * h) for e in eye])
        err = max(err, (entropy_gradient(z) - fd).abs().max().item())
    return err, 1e-6, "abs err <= 1e-6 (central diff.)"


def _lemma1(gen, k):
    err, h = 0.0, 1e-5
    for _ in range(k):
        z, d = _instance(gen)
        fd = (entropy(z + h * d) - entropy(z - h * d)) / (2 * h)
        err = max(err, (fd - first_order_entropy_change(z, d)).abs().item())
    return err, 1e-6, "dH/dt|0 = -Cov, abs err <= 1e-6"


def _bound(gen, k):
    worst = 0.0
    for _ in range(k):
        z, d = _instance(gen)
        for t in (0.01, 0.1, 0.5, 1.0, 3.0):
            err = (entropy_change(z, t * d) - first_order_entropy_change(z, t * d)).abs().item()
            worst = max(worst, err / first_order_error_bound(z, t * d).item())
    return worst, 1.0, "err / (R^2/2 (1/4 + 2 log n)) <= 1"


def _ratio_rows(gen, k, residual, target):
    ratios = []
    while len(ratios) < k:
        z, d = _instance(gen)
        d = d / (d.max() - d.min())
        t = 1e-2 if target == 4 else 0.05
        num, den = residual(z, t * d), residual(z, t / 2 * d)
        if abs(den) > 1e-14 and abs(num) > 1e-13:
            ratios.append(num / den)
    ratios.sort()
    median = ratios[len(ratios) // 2]
    return (abs(median - target), 0.5 if target == 4 else 2.0,
            f"median ratio e(t)/e(t/2) = {median:.2f} (~{target})")


def _quadratic(gen, k):
    def res(z, d):
        return (entropy_change(z, d) - first_order_entropy_change(z, d)).item()
    return _ratio_rows(gen, k, res, 4)


def _cubic(gen, k):
    def res(z, d):
        return (entropy_change(z, d) - second_order_entropy_change(z, d)).item()
    return _ratio_rows(gen, k, res, 8)


def _second_order(gen, k):
    worst, h = 0.0, 1e-3
    for _ in range(k):
        z, d = _instance(gen)
        d = d / (d.max() - d.min())  # unit range: the O(h^2 d^4) truncation error stays below 1e-6
        fd = ((entropy(z + h * d) - 2 * entropy(z) + entropy(z - h * d)) / h**2).item()
        an = 2 * (second_order_entropy_change(z, d) - first_order_entropy_change(z, d)).item()
        worst = max(worst, abs(fd - an) / max(abs(an), 1e-3))
    return worst, 1e-4, "H''(0) vs finite diff., rel err <= 1e-4"


def _two_distribution(gen, k):
    worst = 0.0
    for _ in range(k):
        z, d = _instance(gen)
        zp, ell = z + d, log_policy(z)
        lhs = entropy(zp) - entropy(z)
        rhs = (-((torch.softmax(zp, -1) * ell).sum() - (torch.softmax(z, -1) * ell).sum())
               - categorical_kl(zp, z))
        worst = max(worst, (lhs - rhs).abs().item())
    return worst, 1e-10, "H(pi')-H(pi) = -(E'l - El) - KL(pi'||pi)"


def _prop1(gen, k):
    worst = 0.0
    for _ in range(k):
        z, a = _instance(gen)
        zz = z.clone().requires_grad_(True)
        (torch.softmax(zz, -1) @ a).backward()
        worst = max(worst, (pg_logit_step(z, a, 1.0) - zz.grad).abs().max().item())
    return worst, 1e-12, "eta pi (A - E A) = autograd grad of E_pi A"


def _uncentred(gen, k):
    worst = 0.0
    for _ in range(k):
        z, a = _instance(gen)
        pi, ell = torch.softmax(z, -1), log_policy(z)
        gap = (predicted_entropy_change(z, a, 0.1, "pg", centered=False)
               - predicted_entropy_change(z, a, 0.1, "pg"))
        worst = max(worst, (gap + 0.1 * (pi * a).sum() * policy_covariance(z, ell, pi)).abs().item())
    return worst, 1e-12, "literal eta pi A adds -eta c Cov(l, pi)"


def _theorem(rule):
    def check(gen, k):
        worst = 0.0
        for _ in range(k):
            z, a = _instance(gen)
            step = pg_logit_step(z, a, 0.05) if rule == "pg" else npg_logit_step(z, a, 0.05)
            err = (entropy_change(z, step) - predicted_entropy_change(z, a, 0.05, rule)).abs().item()
            worst = max(worst, err / first_order_error_bound(z, step).item())
        return worst, 1.0, "|exact - predicted| / bound <= 1 (eta = 0.05)"
    return check


def _npg_natural(gen, k):
    worst = 0.0
    for _ in range(k):
        z, a = _instance(gen)
        fisher = _fisher(z)
        worst = max(worst, (fisher @ a - pg_logit_step(z, a, 1.0)).abs().max().item(),
                    (fisher @ torch.ones_like(a)).abs().max().item())
    return worst, 1e-12, "F A = grad E_pi A and F 1 = 0, so F+ grad = A + c"


def _unbiased(gen, k):
    worst = 0.0
    for _ in range(k):
        z, a = _instance(gen, 16)
        n = z.numel()
        pi = torch.softmax(z, -1)
        steps = sampled_logit_step(z.expand(n, n), torch.arange(n)[:, None], a[:, None], 0.3)
        worst = max(worst, ((pi[:, None] * steps).sum(0) - pg_logit_step(z, a, 0.3)).abs().max().item())
    return worst, 1e-12, "E_a[eta A_a (e_a - pi)] = eta pi (A - E A)"


def _discriminator(gen, k):
    worst = 0.0
    for _ in range(k):
        z, a = _instance(gen, 16)
        n = z.numel()
        acts, adv = torch.arange(n)[:, None], a[:, None]
        per = sample_entropy_contribution(z.expand(n, n), acts, adv, 0.3).squeeze(-1)
        direct = first_order_entropy_change(z.expand(n, n),
                                            sampled_logit_step(z.expand(n, n), acts, adv, 0.3))
        worst = max(worst, (per - direct).abs().max().item())
    return worst, 1e-12, "-Cov(l, eta A_a(e_a - pi)) = -eta A_a (S_a - E S)"


def _zero_mean(gen, k):
    worst = 0.0
    for _ in range(k):
        z, a = _instance(gen, 16)
        n = z.numel()
        pi = torch.softmax(z, -1)
        per = sample_entropy_contribution(z.expand(n, n), torch.arange(n)[:, None],
                                          torch.full((n, 1), float(a[0]), dtype=F64), 1.0).squeeze(-1)
        worst = max(worst, (pi * per).sum().abs().item())
    return worst, 1e-12, "E_a[S_a - E S] = 0"


def _noise_drift(gen, k):
    worst, used = 0.0, 0
    while used < k:
        z, _ = _instance(gen, 8)
        n = z.numel()
        coef = expected_sampled_entropy_change(z, torch.ones(n, dtype=F64), 1.0).item()
        if abs(coef) < 1e-3:
            continue
        eta, pi = 1e-4, torch.softmax(z, -1)
        exact = (pi * entropy_change(z.expand(n, n), eta * (torch.eye(n, dtype=F64) - pi))).sum().item()
        worst, used = max(worst, abs(exact / eta**2 / coef - 1)), used + 1
    return worst, 1e-2, "E_a[dH]/eta^2 -> noise coef. (rel, eta=1e-4)"


def _bonus(gen, k):
    worst = 0.0
    for _ in range(k):
        z, a = _instance(gen)
        d = pg_logit_step(z, a, 0.1)
        diff = (first_order_entropy_change(z, d + 0.05 * entropy_gradient(z))
                - first_order_entropy_change(z, d))
        pi, ell, h = torch.softmax(z, -1), log_policy(z), entropy(z)
        worst = max(worst, (diff - 0.05 * (pi**2 * (ell + h) ** 2).sum()).abs().item())
    return worst, 1e-12, "bonus adds eta alpha sum pi^2 (l + H)^2 >= 0"


def _kl_gradient(gen, k):
    worst = 0.0
    for _ in range(k):
        z, zr = _instance(gen)
        zr = zr[: z.numel()] if zr.numel() >= z.numel() else torch.randn(z.numel(), generator=gen, dtype=F64)
        zz = z.clone().requires_grad_(True)
        categorical_kl(zz, zr).backward()
        worst = max(worst, (zz.grad - _fisher(z) @ (log_policy(z) - log_policy(zr))).abs().max().item())
    return worst, 1e-10, "grad KL(pi||ref) = F (l - log ref)"


def _comonotone(gen, k):
    worst = 0.0
    for _ in range(k):
        z, _ = _instance(gen)
        worst = max(worst, -policy_covariance(z, log_policy(z), torch.softmax(z, -1)).item())
    return max(worst, 0.0), 1e-12, "Cov(l, pi) >= 0 (max violation)"


def _npg_monotone(gen, k):
    worst = 0.0
    s = torch.linspace(0, 50, 501, dtype=F64)[:, None]
    for _ in range(k):
        _, r = _instance(gen)
        h = entropy(s * r)
        worst = max(worst, (h[1:] - h[:-1]).max().item())
    return max(worst, 0.0), 1e-12, "H(softmax(s r)) non-increasing in s"


def _estimator_bias(gen, k):
    z = torch.tensor([2.0, 1.0, 0.0, -1.0, -3.0], dtype=F64)
    a = torch.tensor([-1.0, 0.5, 1.0, 2.0, -2.0], dtype=F64)
    target_full = policy_covariance(z, log_policy(z), a).item()
    worst = 0.0
    for n in (2, 4, 16):
        acts = torch.multinomial(torch.softmax(z, -1).expand(k * 50, -1), n, replacement=True, generator=gen)
        lp, adv = log_policy(z)[acts], a[acts]
        lpc, ac = lp - lp.mean(-1, keepdim=True), adv - adv.mean(-1, keepdim=True)
        est = (lpc * ac).mean(-1)
        se = est.std().item() / est.numel() ** 0.5
        worst = max(worst, abs(est.mean().item() - (n - 1) / n * target_full) / se)
    return worst, 5.0, "|mean - (N-1)/N Cov| in standard errors"


def _pooled(gen, k):
    worst = 0.0
    for _ in range(k):
        ids = torch.randint(0, 5, (50,), generator=gen)
        lp, a = torch.randn(50, generator=gen, dtype=F64), torch.randn(50, generator=gen, dtype=F64)
        out = covariance_decomposition(lp, a, ids)
        eq10 = token_covariance(lp[None], a[None], torch.ones(1, 50, dtype=torch.bool)).mean()
        worst = max(worst, (out["pooled"] - out["within"] - out["between"]).abs().item(),
                    (eq10 - out["pooled"]).abs().item())
    return worst, 1e-12, "pooled = within + between (law of total cov.)"


CHECKS: list[tuple[str, str, Callable]] = [
    ("entropy gradient dH/dz = -pi (log pi + H)", "§1.1 / App. E.2", _gradient),
    ("Lemma 1: dH = -Cov(log pi, dz) (first order)", "Lemma 1", _lemma1),
    ("first-order error bound", "theory §1.5", _bound),
    ("first-order error is O(eta^2)", "Lemma 1", _quadratic),
    ("second-order term", "theory §1.4", _second_order),
    ("second-order residual is O(eta^3)", "theory §1.4", _cubic),
    ("exact two-distribution identity", "theory §1.3a", _two_distribution),
    ("PG logit step (centred)", "Proposition 1", _prop1),
    ("uncentred PG step bias", "Prop. 1 / Lemma 3", _uncentred),
    ("vanilla PG entropy change", "Theorem 1", _theorem("pg")),
    ("NPG step is the natural gradient", "Theorem 2", _npg_natural),
    ("NPG entropy change", "Theorem 2", _theorem("npg")),
    ("sampled REINFORCE is unbiased", "theory §1.8", _unbiased),
    ("per-sample entropy discriminator", "theory §1.8", _discriminator),
    ("action-independent A: zero 1st order", "theory §1.8", _zero_mean),
    ("sampling-noise second-order drift", "theory §1.8", _noise_drift),
    ("entropy bonus first-order term", "theory §1.11", _bonus),
    ("KL gradient is Fisher times log-ratio", "theory §1.12", _kl_gradient),
    ("log pi and pi are comonotone", "theory §1.6", _comonotone),
    ("NPG entropy monotone from uniform", "theory §1.7", _npg_monotone),
    ("Eq. 10 estimator bias (N-1)/N", "Eq. 10 / §1.9", _estimator_bias),
    ("pooled covariance decomposition", "Eq. 10 / §1.9", _pooled),
]


def run_checks(instances: int = 200, seed: int = 0) -> list[Row]:
    """Run every check on ``instances`` seeded random float64 instances; return the table rows."""
    if instances < 1:
        raise ValueError(f"instances must be >= 1, got {instances}")
    rows = []
    for i, (statement, ref, fn) in enumerate(CHECKS):
        gen = torch.Generator().manual_seed(seed * 1000 + i)
        err, threshold, bound = fn(gen, instances)
        ok = math.isfinite(err) and err <= threshold
        rows.append(Row(statement, ref, instances, err, bound, ok))
    return rows


def format_table(rows: list[Row]) -> str:
    """Plain-text table: statement | reference | instances | max error | bound | PASS/FAIL."""
    head = ("statement", "paper ref.", "inst.", "max error", "bound / expected", "result")
    body = [(r.statement, r.reference, str(r.instances), f"{r.max_error:.2e}", r.bound,
             "PASS" if r.passed else "FAIL") for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    def fmt(cols):
        return " | ".join(c.ljust(w) for c, w in zip(cols, widths))
    return "\n".join([fmt(head), "-+-".join("-" * w for w in widths), *map(fmt, body)])
