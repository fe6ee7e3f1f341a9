"""Entropy, its gradient, Lemma 1 and its corrections (docs/theory.md §4 statements 1-7)."""

import math

import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import theory as T
from strategies import logits, steps, vectors_like
from tolerances import (ATOL_F64, BOUND_SLACK, CUBIC_RATIO, EXACT_F64, FD_GRAD_ATOL, FD_HESS_RTOL,
                        QUADRATIC_RATIO, RTOL_F64)


def _h(z):
    return T.entropy(z).item()


@given(st.data())
def test_1_entropy_gradient_matches_central_differences(data):
    z = data.draw(logits())
    g = T.entropy_gradient(z)
    h = 1e-6
    eye = torch.eye(z.numel(), dtype=z.dtype)
    fd = torch.stack([(T.entropy(z + h * e) - T.entropy(z - h * e)) / (2 * h) for e in eye])
    assert torch.allclose(g, fd, atol=FD_GRAD_ATOL, rtol=0)
    # ∇H = −F z with F = diag π − π πᵀ
    pi = torch.softmax(z, -1)
    fisher = torch.diag(pi) - torch.outer(pi, pi)
    assert torch.allclose(g, -fisher @ z, atol=ATOL_F64 * (1 + z.abs().max().item()))


@given(st.data(), st.floats(-100, 100))
def test_2_shift_invariance(data, c):
    z = data.draw(logits())
    d = data.draw(vectors_like(z))
    assert math.isclose(_h(z + c), _h(z), rel_tol=RTOL_F64, abs_tol=EXACT_F64)
    ell = T.log_policy(z)
    a = T.policy_covariance(z, ell, d + c).item()
    b = T.policy_covariance(z, ell, d).item()
    assert math.isclose(a, b, rel_tol=RTOL_F64, abs_tol=ATOL_F64)


@given(st.data(), st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0, 3.0]))
def test_3_first_order_bound_is_rigorous(data, t):
    z = data.draw(logits())
    d = t * data.draw(vectors_like(z))
    err = (T.entropy_change(z, d) - T.first_order_entropy_change(z, d)).abs()
    assert err <= T.first_order_error_bound(z, d) + BOUND_SLACK


@given(st.data())
def test_4_first_order_error_is_quadratic(data):
    z = data.draw(logits())
    d = data.draw(vectors_like(z))
    r = (d.max() - d.min()).item()
    assume(r > 1e-3)
    d = d / r  # R_d = 1
    h2 = 2 * (T.second_order_entropy_change(z, d) - T.first_order_entropy_change(z, d)).item()
    assume(abs(h2) >= 1e-3)  # |H''(0)| ≥ 1e-3 R²: otherwise the cubic term dominates
    t = 1e-2
    def e(s):
        return (T.entropy_change(z, s * d) - T.first_order_entropy_change(z, s * d)).item()
    ratio = e(t) / e(t / 2)
    assert QUADRATIC_RATIO[0] <= ratio <= QUADRATIC_RATIO[1]


@given(st.data())
def test_5_second_order_term_matches_finite_differences(data):
    z = data.draw(logits())
    d = data.draw(vectors_like(z))
    pi = torch.softmax(z, -1)
    assume(pi.max().item() < 1 - 1e-12)
    h = 1e-3
    fd = ((T.entropy(z + h * d) - 2 * T.entropy(z) + T.entropy(z - h * d)) / h**2).item()
    analytic = 2 * (T.second_order_entropy_change(z, d) - T.first_order_entropy_change(z, d)).item()
    assume(abs(analytic) > 1e-6)
    assert math.isclose(fd, analytic, rel_tol=FD_HESS_RTOL, abs_tol=1e-7)


def test_5b_second_order_residual_is_cubic():
    # NPG step on a fixed instance (docs/theory.md §6: residual ratio ≈ 8 when η halves)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(12, generator=g, dtype=torch.float64) * 2
    a = torch.randn(12, generator=g, dtype=torch.float64)
    def res(eta):
        return (T.entropy_change(z, eta * a) - T.second_order_entropy_change(z, eta * a)).item()
    for eta in (0.1, 0.05):
        ratio = res(eta) / res(eta / 2)
        assert CUBIC_RATIO[0] <= ratio <= CUBIC_RATIO[1], ratio


def _kl(z1, z0):
    return T.categorical_kl(z1, z0)


@given(st.data())
def test_6_two_distribution_identity(data):
    z = data.draw(logits())
    d = data.draw(vectors_like(z))
    zp = z + d
    ell = T.log_policy(z)
    pi, pip = torch.softmax(z, -1), torch.softmax(zp, -1)
    lhs = T.entropy(zp) - T.entropy(z)
    rhs = -((pip * ell).sum() - (pi * ell).sum()) - _kl(zp, z)
    assert abs((lhs - rhs).item()) <= ATOL_F64 * (1 + ell.abs().max().item())
    assert _kl(zp, z).item() >= -EXACT_F64


@given(st.data(), steps)
def test_7_exponential_tilt_formula(data, t):
    z = data.draw(logits())
    d = data.draw(vectors_like(z))
    ell0 = T.log_policy(z)
    k = torch.logsumexp(ell0 + t * d, -1)  # K(t) = log E_π e^{td}
    pit = torch.softmax(z + t * d, -1)
    k_prime = (pit * d).sum()
    rhs = k - t * k_prime - (pit * ell0).sum()
    assert abs((T.entropy(z + t * d) - rhs).item()) <= 1e3 * EXACT_F64 * (1 + ell0.abs().max().item())
