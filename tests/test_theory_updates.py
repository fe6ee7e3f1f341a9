"""PG / NPG / sampled steps and the entropy changes they predict (docs/theory.md §4 statements 8-14)."""

import math

import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import theory as T
from strategies import logits, steps, vectors_like
from tolerances import ATOL_F64, BOUND_SLACK, EXACT_F64

F64 = torch.float64


def _scale(*xs):
    return 1.0 + max(x.abs().max().item() for x in xs)


@given(st.data(), st.floats(-10, 10))
def test_8_pg_step_is_the_centred_autodiff_gradient(data, c):
    z = data.draw(logits())
    r = data.draw(vectors_like(z))
    zz = z.clone().requires_grad_(True)
    (torch.softmax(zz, -1) @ r).backward()
    step = T.pg_logit_step(z, r, lr=1.0)
    assert torch.allclose(step, zz.grad, atol=EXACT_F64 * _scale(r), rtol=0)
    assert torch.allclose(T.pg_logit_step(z, r + c, lr=1.0), step, atol=10 * EXACT_F64 * _scale(r, r + c))
    assert abs(step.sum().item()) <= EXACT_F64 * _scale(r)
    # the paper's literal η π ⊙ A differs in first order by exactly η c Cov_π(ℓ, π), c = E_π A
    eta = 0.3
    ell, pi = T.log_policy(z), torch.softmax(z, -1)
    cc = (pi * r).sum()
    lit = T.predicted_entropy_change(z, r, eta, "pg", centered=False)
    cen = T.predicted_entropy_change(z, r, eta, "pg")
    expected = -eta * cc * T.policy_covariance(z, ell, pi)
    assert abs((lit - cen - expected).item()) <= ATOL_F64 * _scale(r)


def test_8b_literal_pg_step_equals_centred_iff_mean_advantage_is_zero():
    z = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    pi = torch.softmax(z, -1)
    a = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    a0 = a - (pi * a).sum()
    assert torch.allclose(T.pg_logit_step(z, a0, 0.1, centered=False), T.pg_logit_step(z, a0, 0.1))
    assert not torch.allclose(T.pg_logit_step(z, a, 0.1, centered=False), T.pg_logit_step(z, a, 0.1))


@given(st.data())
def test_9_log_pi_and_pi_are_comonotone(data):
    z = data.draw(logits())
    ell, pi = T.log_policy(z), torch.softmax(z, -1)
    cov = T.policy_covariance(z, ell, pi).item()
    assert cov >= -EXACT_F64
    if (z.max() - z.min()).item() < 1e-9:
        assert cov < EXACT_F64


def test_9b_comonotone_covariance_zero_only_at_uniform():
    z = torch.zeros(7, dtype=F64)
    assert abs(T.policy_covariance(z, T.log_policy(z), torch.softmax(z, -1)).item()) < EXACT_F64
    z[0] = 1e-3
    assert T.policy_covariance(z, T.log_policy(z), torch.softmax(z, -1)).item() > 0


@given(st.data())
def test_10a_npg_prediction_is_first_order(data):
    z = data.draw(logits())
    a = data.draw(vectors_like(z))
    r = (a.max() - a.min()).item()
    assume(r > 1e-3)
    eta = 1e-3 / r
    pred = T.predicted_entropy_change(z, a, eta, "npg")
    assert torch.allclose(pred, -eta * T.policy_covariance(z, T.log_policy(z), a), atol=EXACT_F64)
    true = T.entropy_change(z, T.npg_logit_step(z, a, eta))
    assert abs((true - pred).item()) <= T.first_order_error_bound(z, eta * a).item() + BOUND_SLACK


@given(st.data())
def test_10b_npg_entropy_monotone_from_uniform(data):
    r = data.draw(vectors_like(torch.zeros(data.draw(st.integers(2, 64)), dtype=F64), 0.0, 1.0))
    s = torch.linspace(0, 50, 501, dtype=F64).unsqueeze(-1)
    h = T.entropy(s * r)
    assert (h[1:] - h[:-1]).max().item() <= EXACT_F64


def test_10c_npg_raises_entropy_when_cov_negative_and_step_small():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        z = torch.randn(10, generator=g, dtype=F64) * 2
        r = -z + 0.3 * torch.randn(10, generator=g, dtype=F64)  # anti-correlated with log π
        cov = T.policy_covariance(z, T.log_policy(z), r).item()
        assert cov < 0
        delta = -cov
        rr = (r.max() - r.min()).item()
        eta = 0.99 * delta / (rr**2 * (0.25 + 2 * math.log(10)))
        assert T.entropy_change(z, eta * r).item() > 0


@given(st.data(), steps)
def test_11_sampled_reinforce_is_unbiased_by_enumeration(data, eta):
    z = data.draw(logits(max_n=24))
    a = data.draw(vectors_like(z))
    n = z.numel()
    pi = torch.softmax(z, -1)
    actions = torch.arange(n).unsqueeze(-1)  # one single-sample step per action        [n, 1]
    steps_ = T.sampled_logit_step(z.expand(n, n), actions, a.unsqueeze(-1), eta)  # [n, n]
    expected_step = (pi.unsqueeze(-1) * steps_).sum(0)
    assert torch.allclose(expected_step, T.pg_logit_step(z, a, eta), atol=EXACT_F64 * _scale(a))
    fo = T.first_order_entropy_change(z.expand(n, n), steps_)
    assert (abs(((pi * fo).sum() - T.predicted_entropy_change(z, a, eta, "pg")).item())
            <= EXACT_F64 * _scale(a))


@given(st.data())
def test_12_per_sample_discriminator(data):
    z = data.draw(logits(max_n=24))
    adv = data.draw(vectors_like(z))
    n = z.numel()
    eta = 0.7
    actions = torch.arange(n).unsqueeze(-1)
    contrib = T.sample_entropy_contribution(z.expand(n, n), actions, adv.unsqueeze(-1), eta).squeeze(-1)
    direct = T.first_order_entropy_change(
        z.expand(n, n), T.sampled_logit_step(z.expand(n, n), actions, adv.unsqueeze(-1), eta))
    assert torch.allclose(contrib, direct, atol=EXACT_F64 * _scale(adv))


def test_12b_sign_rule_rare_token_positive_advantage_raises_entropy():
    g = torch.Generator().manual_seed(1)
    checked = 0
    for _ in range(200):
        z = torch.randn(8, generator=g, dtype=F64) * 2
        ell, h = T.log_policy(z), T.entropy(z)
        rare = torch.nonzero(ell < -h).flatten()
        if rare.numel() == 0:
            continue
        a = int(rare[0])
        for adv in (1.0, -1.0):
            step = T.sampled_logit_step(z, torch.tensor([a]), torch.tensor([adv], dtype=F64), 1.0)
            # η0 from the rigorous bound: |err| ≤ η² B  <  η |first order|
            fo = T.first_order_entropy_change(z, step).item()
            b = T.first_order_error_bound(z, step).item()
            eta = 0.5 * abs(fo) / b
            true = T.entropy_change(z, eta * step).item()
            assert (true > 0) == (adv > 0)
            checked += 1
    assert checked > 100


@given(st.data(), st.floats(-3, 3))
def test_13_action_independent_advantage_has_zero_expected_first_order(data, c):
    z = data.draw(logits(max_n=24))
    n = z.numel()
    pi = torch.softmax(z, -1)
    actions = torch.arange(n).unsqueeze(-1)
    adv = torch.full((n, 1), c, dtype=F64)
    contrib = T.sample_entropy_contribution(z.expand(n, n), actions, adv, 1.0).squeeze(-1)
    assert abs((pi * contrib).sum().item()) <= EXACT_F64 * (1 + abs(c))


def test_13b_noise_drift_coefficient_matches_exact_expectation():
    """E_a[ΔH]/η² → the §1.8 noise coefficient, with an O(η) correction; the sign is not fixed."""
    g = torch.Generator().manual_seed(7)
    tested, signs = 0, set()
    for _ in range(40):
        n = 6
        z = torch.randn(n, generator=g, dtype=F64) * 1.5
        a = torch.ones(n, dtype=F64)  # action-independent: only the noise term survives
        coef = T.expected_sampled_entropy_change(z, a, 1.0, order=2).item()
        if abs(coef) <= 1e-3:
            continue
        pi = torch.softmax(z, -1)
        rel_err = []
        for eta in (1e-2, 1e-3, 1e-4):
            d = eta * (torch.eye(n, dtype=F64) - pi)  # sampled directions, row a
            exact = (pi * T.entropy_change(z.expand(n, n), d)).sum().item()
            rel_err.append(abs(exact / eta**2 / coef - 1))
        assert rel_err[2] < 0.01
        assert 0.05 < rel_err[1] / rel_err[0] < 0.2  # linear in η
        signs.add(coef > 0)
        tested += 1
    assert tested >= 20 and signs == {True, False}


@given(st.data(), st.floats(1e-3, 1.0))
def test_14_entropy_bonus_adds_nonnegative_first_order_term(data, alpha):
    z = data.draw(logits())
    a = data.draw(vectors_like(z))
    eta = 0.1
    d = T.pg_logit_step(z, a, eta)
    grad_h = T.entropy_gradient(z)
    diff = T.first_order_entropy_change(z, d + eta * alpha * grad_h) - T.first_order_entropy_change(z, d)
    ell, pi, h = T.log_policy(z), torch.softmax(z, -1), T.entropy(z)
    closed = eta * alpha * (pi**2 * (ell + h) ** 2).sum()
    assert abs((diff - closed).item()) <= EXACT_F64 * _scale(z, a)
    assert closed.item() >= 0


@given(st.data())
def test_14b_kl_to_uniform_is_the_entropy_bonus_and_kl_gradient_is_fisher(data):
    z = data.draw(logits())
    z_ref = data.draw(logits(min_n=z.numel(), max_n=z.numel()))
    zz = z.clone().requires_grad_(True)
    T.categorical_kl(zz, torch.zeros_like(z)).backward()
    assert torch.allclose(zz.grad, -T.entropy_gradient(z), atol=ATOL_F64)
    zz.grad = None
    T.categorical_kl(zz, z_ref).backward()
    pi = torch.softmax(z, -1)
    rho = T.log_policy(z) - T.log_policy(z_ref)
    fisher = torch.diag(pi) - torch.outer(pi, pi)
    assert torch.allclose(zz.grad, fisher @ rho, atol=ATOL_F64 * _scale(rho))
