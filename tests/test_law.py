"""theory/law.py: the entropy-performance law R = −a·exp(H) + b (Cui et al. 2025, Eq. 6, §2.4, §2.5)."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from tolerances import ATOL_F64, LAW_CI_COVERAGE_WINDOW, LAW_RECOVERY_ATOL
from theory.law import fit_entropy_law, law_predict
from theory.law_extrapolation import compare_forms, fit_size_scaling, predict_from_early


def synthetic_run(n=60, a=0.3, b=0.75, noise=0.0, seed=0, h0=1.2, h_end=0.05):
    """Entropy decaying over a run (step order) and R on the law plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    H = h_end + (h0 - h_end) * np.exp(-t / (n / 5))
    return t, H, law_predict(H, a, b) + noise * rng.standard_normal(n)


@st.composite
def law_cases(draw):
    """(H, a, b): n in [3, 40] entropies in [0, 3] nats with a spread of at least 0.05."""
    n = draw(st.integers(3, 40))
    lo = draw(st.floats(0.0, 2.5))
    spread = draw(st.floats(0.05, 3.0 - lo)) if lo < 2.95 else 0.05
    u = draw(st.lists(st.floats(0.0, 1.0), min_size=n - 2, max_size=n - 2))
    H = lo + spread * np.array([0.0, 1.0] + u)  # endpoints included, so ptp(H) == spread
    a = draw(st.floats(-2.0, 2.0))
    b = draw(st.floats(-2.0, 2.0))
    return H, a, b


# ----------------------------------------------------------------------------- fit_entropy_law

@given(law_cases())
def test_noiseless_data_is_recovered_exactly(case):
    """On R = −a·exp(H) + b exactly, OLS on exp(H) returns (a, b), ceiling b − a, zero residual."""
    H, a, b = case
    fit = fit_entropy_law(H, law_predict(H, a, b), n_boot=0)
    assert_allclose([fit.a, fit.b], [a, b], atol=LAW_RECOVERY_ATOL)
    assert_allclose(fit.ceiling, fit.b - fit.a, atol=ATOL_F64)
    assert fit.rmse < LAW_RECOVERY_ATOL
    assert fit.n_points == H.size and fit.n_dropped == 0
    assert fit.a_ci is None and fit.b_ci is None and fit.ceiling_ci is None


def test_noiseless_fit_on_paper_scale_run():
    # a ≈ 0.3, b ≈ 0.75 are within Fig. 7's axes (a in [0, 0.35], b in [0.1, 0.8])
    _, H, R = synthetic_run()
    fit = fit_entropy_law(H, R, n_boot=200, seed=1)
    assert_allclose([fit.a, fit.b, fit.ceiling], [0.3, 0.75, 0.45], atol=LAW_RECOVERY_ATOL)
    assert_allclose(fit.r2, 1.0, atol=LAW_RECOVERY_ATOL)
    # zero residuals: every bootstrap replicate is the fit itself
    assert_allclose(fit.a_ci, [0.3, 0.3], atol=LAW_RECOVERY_ATOL)
    assert_allclose(fit.predict(0.0), fit.ceiling, atol=ATOL_F64)


@pytest.mark.parametrize("n", [6, 40])
def test_bootstrap_ci_coverage(n):
    """About 95% of seeded noisy repetitions have the truth inside each 95% (bootstrap-t) interval."""
    a, b = 0.3, 0.7
    reps = 400
    hits = np.zeros(3)
    for r in range(reps):
        rng = np.random.default_rng(10_000 + r)
        H = np.sort(rng.uniform(0.05, 1.2, n))[::-1]
        R = law_predict(H, a, b) + rng.normal(0.0, 0.01, n)
        fit = fit_entropy_law(H, R, n_boot=300, seed=r)
        for i, (ci, truth) in enumerate(((fit.a_ci, a), (fit.b_ci, b), (fit.ceiling_ci, b - a))):
            hits[i] += ci[0] <= truth <= ci[1]
    lo, hi = LAW_CI_COVERAGE_WINDOW
    assert np.all((hits / reps >= lo) & (hits / reps <= hi)), hits / reps


def test_bootstrap_is_seeded_and_pairs_variant_runs():
    _, H, R = synthetic_run(noise=0.01, seed=3)
    f1 = fit_entropy_law(H, R, n_boot=300, seed=5)
    f2 = fit_entropy_law(H, R, n_boot=300, seed=5)
    f3 = fit_entropy_law(H, R, n_boot=300, seed=6)
    assert f1 == f2
    assert f1.a_ci != f3.a_ci
    for kw in (dict(bootstrap="pairs"), dict(interval="percentile"),
               dict(bootstrap="pairs", interval="percentile")):
        fp = fit_entropy_law(H, R, n_boot=300, seed=5, **kw)
        assert (fp.a, fp.b) == (f1.a, f1.b)
        for est, (lo, hi) in ((fp.a, fp.a_ci), (fp.b, fp.b_ci), (fp.ceiling, fp.ceiling_ci)):
            assert lo < est < hi
    # a narrower level gives a nested interval
    f50 = fit_entropy_law(H, R, n_boot=300, seed=5, ci=0.5)
    assert f1.a_ci[0] <= f50.a_ci[0] <= f50.a_ci[1] <= f1.a_ci[1]


@given(law_cases(), st.floats(-5, 5), st.floats(0.1, 10))
def test_fit_is_affine_equivariant_in_R(case, shift, scale):
    """R -> s·R + c maps (a, b) -> (s·a, s·b + c): the fit does not depend on R's units."""
    H, a, b = case
    rng = np.random.default_rng(0)
    R = law_predict(H, a, b) + 0.01 * rng.standard_normal(H.size)
    f = fit_entropy_law(H, R, n_boot=0)
    g = fit_entropy_law(H, scale * R + shift, n_boot=0)
    assert_allclose([g.a, g.b], [scale * f.a, scale * f.b + shift], atol=1e-6 * (1 + scale + abs(shift)))


# ----------------------------------------------------------------------------- input errors

def test_non_finite_rows_dropped_with_count():
    _, H, R = synthetic_run(n=20)
    H[3], R[7], R[8] = np.nan, np.inf, -np.inf
    with pytest.warns(UserWarning, match="dropped 3 of 20 rows"):
        fit = fit_entropy_law(H, R, n_boot=0)
    assert fit.n_points == 17 and fit.n_dropped == 3
    assert_allclose([fit.a, fit.b], [0.3, 0.75], atol=LAW_RECOVERY_ATOL)


def test_no_warning_on_clean_input():
    _, H, R = synthetic_run(n=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_entropy_law(H, R, n_boot=10)


@pytest.mark.parametrize("H, R, match", [
    ([0.1, 0.2, 0.3], [0.1, 0.2], "same length"),
    ([0.1, 0.2], [0.1, 0.2], "at least 3"),
    ([0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4], "constant"),
    ([[0.1, 0.2, 0.3]], [[0.1, 0.2, 0.3]], "1-D"),
    (["x", "y", "z"], [0.1, 0.2, 0.3], "real numbers"),
    ([800.0, 1.0, 2.0], [0.1, 0.2, 0.3], "nats"),
])
def test_bad_inputs_raise(H, R, match):
    with pytest.raises(ValueError, match=match):
        fit_entropy_law(H, R)


def test_too_few_after_dropping_raises():
    with pytest.warns(UserWarning, match="dropped 2 of 4"), pytest.raises(ValueError, match="at least 3"):
        fit_entropy_law([0.1, np.nan, 0.3, 0.4], [0.1, 0.2, np.nan, 0.4])


@pytest.mark.parametrize("kw, match", [
    (dict(n_boot=-1), "n_boot"), (dict(n_boot=2.5), "n_boot"), (dict(ci=1.0), "ci"),
    (dict(bootstrap="wild"), "bootstrap"), (dict(interval="bca"), "interval"),
])
def test_bad_options_raise(kw, match):
    _, H, R = synthetic_run(n=10)
    with pytest.raises(ValueError, match=match):
        fit_entropy_law(H, R, **kw)


# ----------------------------------------------------------------------------- predict_from_early

def test_early_prediction_noiseless_is_exact():
    _, H, R = synthetic_run(n=100)
    p = predict_from_early(H, R, 0.15)
    assert (p.forward.n_fit, p.forward.n_pred) == (15, 85)
    assert (p.reverse.n_fit, p.reverse.n_pred) == (15, 85)
    for part in (p.forward, p.reverse):
        assert part.rmse < LAW_RECOVERY_ATOL and part.endpoint_error < LAW_RECOVERY_ATOL
        assert_allclose([part.a, part.b], [0.3, 0.75], atol=1e-6)


def test_early_prediction_matches_manual_computation():
    t, H, R = synthetic_run(n=40, noise=0.01, seed=2)
    p = predict_from_early(H, R, 0.25)
    k = 10
    f = fit_entropy_law(H[:k], R[:k], n_boot=0)
    err = f.predict(H[k:]) - R[k:]
    assert_allclose([p.forward.a, p.forward.b], [f.a, f.b], atol=ATOL_F64)
    assert_allclose(p.forward.rmse, math.sqrt(np.mean(err**2)), atol=ATOL_F64)
    assert_allclose(p.forward.endpoint_error, abs(err[-1]), atol=ATOL_F64)
    g = fit_entropy_law(H[-k:], R[-k:], n_boot=0)
    assert_allclose(p.reverse.endpoint_error, abs(g.predict(H[0]) - R[0]), atol=ATOL_F64)
    # shuffled input with its steps gives the same answer as step-ordered input
    perm = np.random.default_rng(0).permutation(t.size)
    q = predict_from_early(H[perm], R[perm], 0.25, steps=t[perm])
    assert q == p


def test_reverse_skipped_when_late_entropy_is_flat():
    H = np.concatenate([np.linspace(1.0, 0.2, 17), np.full(3, 0.1)])
    p = predict_from_early(H, law_predict(H, 0.3, 0.7), 0.15)
    assert p.reverse is None and "constant" in p.reverse_skipped
    assert p.forward.rmse < LAW_RECOVERY_ATOL


@pytest.mark.parametrize("n, fraction, match", [
    (20, 0.0, r"\(0, 1\)"), (20, 1.0, r"\(0, 1\)"), (10, 0.15, "at least 3"), (3, 0.99, "nothing to predict"),
])
def test_early_prediction_bad_fraction(n, fraction, match):
    _, H, R = synthetic_run(n=n)
    with pytest.raises(ValueError, match=match):
        predict_from_early(H, R, fraction)


def test_early_prediction_steps_length_checked():
    _, H, R = synthetic_run(n=20)
    with pytest.raises(ValueError, match="steps"):
        predict_from_early(H, R, 0.2, steps=np.arange(19))


# ----------------------------------------------------------------------------- compare_forms

def test_forms_prefer_the_generating_law():
    rng = np.random.default_rng(4)
    H = np.linspace(2.0, 0.05, 80)
    noise = 0.005 * rng.standard_normal(H.size)
    exp_forms = compare_forms(H, law_predict(H, 0.3, 0.9) + noise)
    assert [f.name for f in exp_forms][0] == "exponential"
    assert {f.name for f in exp_forms} == {"exponential", "linear", "power"}
    lin_forms = compare_forms(H, 0.8 - 0.2 * H + noise)
    assert lin_forms[0].name in ("linear", "power")
    assert lin_forms.index(next(f for f in lin_forms if f.name == "linear")) < \
        lin_forms.index(next(f for f in lin_forms if f.name == "exponential"))
    pow_forms = compare_forms(H, 0.8 - 0.2 * H**2.5 + noise)
    assert pow_forms[0].name == "power"
    assert_allclose(pow_forms[0].params["c"], 2.5, rtol=0.05)
    assert all(a.aic <= b.aic for a, b in zip(exp_forms, exp_forms[1:]))


def test_forms_noiseless_exponential_matches_fit_and_power_needs_nonnegative_H():
    _, H, R = synthetic_run(n=30)
    forms = {f.name: f for f in compare_forms(H, R)}
    assert_allclose([forms["exponential"].params["a"], forms["exponential"].params["b"]], [0.3, 0.75],
                    atol=LAW_RECOVERY_ATOL)
    assert forms["exponential"].n_params == 2 and forms["power"].n_params == 3
    names = [f.name for f in compare_forms(H - 0.5, R)]
    assert "power" not in names and len(names) == 2


# ----------------------------------------------------------------------------- fit_size_scaling

@given(st.floats(-0.2, 0.2), st.floats(-1, 1), st.floats(-0.2, 0.2), st.floats(-1, 1))
def test_size_scaling_recovers_log_linear_coefficients(alpha_a, beta_a, alpha_b, beta_b):
    sizes = np.array([0.36, 1.3, 2.8, 6.5, 31.0])  # Qwen2.5 non-embedding sizes (B), paper §2.5
    a = alpha_a * np.log(sizes) + beta_a
    b = alpha_b * np.log(sizes) + beta_b
    fit = fit_size_scaling(sizes, np.stack([a, b], axis=1))
    assert fit.names == ("a", "b")
    assert_allclose([fit.slope["a"], fit.intercept["a"], fit.slope["b"], fit.intercept["b"]],
                    [alpha_a, beta_a, alpha_b, beta_b], atol=1e-10)
    assert_allclose(fit.predict([72.0])["a"], alpha_a * np.log(72.0) + beta_a, atol=1e-10)


def test_size_scaling_mapping_and_natural_log():
    sizes = [1.0, math.e, math.e**2]
    fit = fit_size_scaling(sizes, {"a": [0.1, 0.2, 0.3]})
    assert_allclose([fit.slope["a"], fit.intercept["a"], fit.r2["a"]], [0.1, 0.1, 1.0], atol=1e-12)
    single = fit_size_scaling(sizes, [0.1, 0.2, 0.3])
    assert single.names == ("c0",)


@pytest.mark.parametrize("sizes, coefs, match", [
    ([1, 2], [0.1, 0.2], "at least 3"),
    ([1, 0, 2], [0.1, 0.2, 0.3], "> 0"),
    ([2, 2, 2], [0.1, 0.2, 0.3], "equal"),
    ([1, 2, 3], [0.1, 0.2], "values for 3 sizes"),
    ([1, 2, 3], [0.1, np.nan, 0.3], "NaN"),
    ([1, 2, 3], np.zeros((3, 2, 1)), r"\[m\] or \[m, k\]"),
    ([1, 2, 3], {}, "empty"),
])
def test_size_scaling_errors(sizes, coefs, match):
    with pytest.raises(ValueError, match=match):
        fit_size_scaling(sizes, coefs)


def test_too_few_points_for_an_interval_are_said_so():
    """A 3-point fit has one residual degree of freedom: its bootstrap interval is meaningless
    (seen: a 95% CI of [-7e11, 1.19]), so the fit comes without intervals and a warning says why."""
    from theory.law import MIN_CI_POINTS

    H = np.array([0.2, 0.5, 0.9])
    with pytest.warns(UserWarning, match="too few for a 95% interval"):
        fit = fit_entropy_law(H, -np.exp(H) + 1.0, n_boot=200)
    assert fit.a_ci is None and fit.n_boot == 0
    H = np.linspace(0.1, 1.0, MIN_CI_POINTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_entropy_law(H, -np.exp(H) + 1.0 + 0.01 * np.sin(7 * H), n_boot=50)
    assert fit.a_ci is not None
