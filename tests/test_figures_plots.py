"""Each figure function on tiny run directories made here: the returned arrays, not pixels (headless)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fake_runs import write_llm_run, write_sim_lm, write_sim_pg
from figures.fig_collapse import plot_collapse, progress_share, shares_at
from figures.fig_covariance import covariance_percentiles, plot_covariance
from figures.fig_law import plot_law
from figures.fig_methods import mean_ci, plot_methods
from figures.fig_prediction import plot_prediction
from figures.fig_sweeps import plot_sweep, sweep_value
from figures.fig_theory import plot_theory
from figures.curves import kind_of, law_points, load_curves, non_embedding_params, smooth

A, B = 0.3, 0.9


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    d = {"sizes": [write_llm_run(root / f"m{i}", a=0.2 + 0.05 * i, b=0.8 + 0.05 * i, size_name=f"m{i}",
                                 size=10**(4 + i)) for i in range(3)]}
    d["grpo"] = [d["sizes"][0], write_llm_run(root / "g1", seed=1, a=0.2, b=0.8, size_name="m0", size=10**4)]
    d["kl_cov"] = [write_llm_run(root / f"k{s}", objective="kl_cov", seed=s, h_end=0.5, size_name="m0",
                                 size=10**4,
                                 params={"kl_coef": 1.0}, resp_len=7.0) for s in (0, 1)]
    d["sim_lm"] = write_sim_lm(root / "sim-lm")
    d["sim_pg"] = [write_sim_pg(root / f"pg{lr}", lr) for lr in (0.01, 0.03, 0.1)]
    return d


def test_loader_reads_both_kinds(runs):
    c = load_curves(runs["sizes"][0])
    assert c.kind == "llm" and c.step.size == 60 and c.val_step.size == 21
    assert c.meta["size_name"] == "m0" and c.meta["objective"] == "grpo"
    s = load_curves(runs["sim_lm"])
    assert s.kind == "sim" and s.entropy.shape == (20,) and np.isfinite(s.cov).all()
    with pytest.raises(ValueError, match="not a run directory"):
        kind_of(runs["sim_lm"].parent)
    H, R, step = law_points(c, width=1)
    assert_allclose(R, -0.2 * np.exp(H) + 0.8, atol=1e-12)


def test_helpers():
    assert_allclose(smooth(np.array([0.0, 3.0, 0.0]), 3), [1.5, 1.0, 1.5])
    t, share = progress_share(np.arange(5), np.array([4.0, 2, 1, 0.5, 0]), width=1)
    assert_allclose(share, [0, 0.5, 0.75, 0.875, 1])
    assert shares_at(np.arange(5), np.array([4.0, 2, 1, 0.5, 0]), (0.5,), width=1)[0] == pytest.approx(0.75)
    m, h, n = mean_ci([1.0, 2.0, 3.0])
    assert (m, n) == (2.0, 3) and h == pytest.approx(4.303 * 1 / np.sqrt(3), rel=1e-3)
    assert np.isnan(mean_ci([1.0])[1])
    cfg = {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
           "intermediate_size": 16}
    assert non_embedding_params(cfg) == 64 + 2 * 8 * 4 + 64 + 8 + 8 + 3 * 8 * 16 + 16 + 8


def test_collapse(runs, tmp_path):
    d = plot_collapse(runs["grpo"], tmp_path / "c")
    assert (tmp_path / "c.png").is_file() and len(d.runs) == 2
    # H decays with tau = 10 over 60 steps: most of the drop is early, as in paper Fig. 2
    assert 0.3 < d.entropy_share[0] < d.entropy_share[1] <= 1.0
    assert d.runs[0].acc_end > d.runs[0].acc_start
    assert d.runs[0].reward_start == pytest.approx(0.2 + 0.005 * 2.5)  # mean of steps 0..5


def test_law_recovers_coefficients_and_scaling(runs, tmp_path):
    d = plot_law(runs["sizes"], tmp_path / "law", n_boot=50, width=1)
    g = d.groups["m1"]
    assert g.fit.a == pytest.approx(0.25, abs=1e-9) and g.fit.b == pytest.approx(0.85, abs=1e-9)
    assert g.fit.r2 == pytest.approx(1.0) and g.best_form == "exponential"
    assert_allclose(d.sizes, [1e4, 1e5, 1e6]) and d.scaling.r2["a"] == pytest.approx(1.0)


def test_prediction_exact_law_has_zero_error(runs, tmp_path):
    d = plot_prediction(runs["grpo"][:1], tmp_path / "p", width=1)
    r = d.runs[0]
    assert r.k == 3 and r.rmse < 1e-9 and d.mean_final_error < 1e-9


def test_covariance(runs, tmp_path):
    d = plot_covariance([runs["grpo"][0], runs["sim_lm"]], tmp_path / "cov")
    llm = [r for r in d.cov_dh if r.kind == "llm"][0]
    assert llm.pearson == pytest.approx(1.0) and llm.cov_positive_share == 1.0
    assert d.by_accuracy.n_runs == 1 and set(d.by_accuracy.bins) and all(
        b.step.shape == (20,) for b in d.by_accuracy.bins.values())


def test_covariance_percentiles_are_decreasing():
    d = covariance_percentiles(seed=0, vocab=3, horizon=2, samples=8, instances=8)
    assert d.n_tokens == 8 * 8 * 2 and np.all(np.diff(d.mean_cov) <= 1e-12)
    assert covariance_percentiles(seed=0, vocab=3, horizon=2, samples=8, instances=8).mean_cov.tolist() == \
        d.mean_cov.tolist()


def test_methods_band_and_table(runs, tmp_path):
    d = plot_methods(runs["grpo"] + runs["kl_cov"], tmp_path / "m")
    assert list(d.methods) == ["grpo", "kl_cov"]
    g, k = d.methods["grpo"], d.methods["kl_cov"]
    assert g.n_seeds == 2 and g.entropy.mean.shape == (60,)
    assert k.entropy.final.mean > g.entropy.final.mean and k.resp_len.final.mean > g.resp_len.final.mean
    assert np.all(g.acc.lo <= g.acc.hi)


def test_sweep_values(runs, tmp_path):
    d = plot_sweep([runs["grpo"][0], runs["kl_cov"][0]], tmp_path / "s", "kl_cov")
    assert [v.value for v in d.values] == [0.0, 1.0]
    assert sweep_value(load_curves(runs["kl_cov"][0]), "kl_cov") == 1.0
    with pytest.raises(ValueError, match="unknown sweep"):
        sweep_value(load_curves(runs["kl_cov"][0]), "nope")


def test_theory_slope_two(runs, tmp_path):
    d = plot_theory(runs["sim_pg"], [runs["sim_lm"], runs["grpo"][0]], tmp_path / "t")
    assert d.step_size.slope == pytest.approx(2.0, abs=0.15)
    kinds = {r.kind: r for r in d.scatter}
    assert kinds["sim"].pearson > 0.5 and kinds["llm"].pearson == pytest.approx(1.0)
    thm = d.theorem[0]  # Theorem 1 against the exact change of a GRPO + Adam tabular LM: signs mostly right
    assert thm.rule == "theorem1" and thm.per_state.sign_acc > 0.6 and thm.per_state.corr_ci[0] > 0
    assert (tmp_path / "t.png").is_file()
