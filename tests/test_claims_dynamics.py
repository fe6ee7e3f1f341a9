"""The entropy-dynamics rows grade the measured effect: with the decomposition terms or the theorem's
prediction sign-flipped, shuffled across states or replaced by noise, or the Cov series reversed, a row
that held no longer holds; Lemma 1 and the linearisation are numerical checks, not counted as claims;
old run folders without a decomposition read "not measured"."""

from dataclasses import replace

import numpy as np
import pytest

from fake_runs import decomposition, fake_states, write_llm_run, write_sim_lm
from theory.agreement import agreement, block_bootstrap_corr
from figures.draw import draw_all
from figures.fig_dynamics import dynamics_data, plot_dynamics
from reproduce.claim_rules import FAILS, HOLDS, NA, PARTLY, Evidence, summarize
from reproduce.claims import CLAIMS, claim_rows
from reproduce.claims_dynamics import DYNAMICS_CLAIMS, NOT_DECOMPOSED

LLM_ROWS = ("Theorem 1 predicts each token state's dH (LLM; beyond the paper)",
            "Theorem 2 (natural-gradient) reading of each state's dH (LLM; beyond the paper)",
            "a state's entropy change comes from its own tokens' updates, not other states' (LLM)")
TERM_OF = {LLM_ROWS[0]: "theorem", LLM_ROWS[1]: "theorem2", LLM_ROWS[2]: "own"}
SIM_ROWS = ("Theorem 1 predicts each state's dH (tabular LM)",
            "Theorem 1 predicts the per-step dH (tabular LM)")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    root = tmp_path_factory.mktemp("dyn")
    dirs = [write_llm_run(root / "g0", diagnose_every=20), write_sim_lm(root / "sim")]
    return draw_all(dirs, root / "figs", only=("dynamics", "theory", "covariance")), dirs


def _with(results, dec):
    runs = results.dynamics.runs
    return replace(results, dynamics=replace(results.dynamics, runs=tuple(
        replace(r, summary={**{k: v for k, v in r.summary.items() if k != "decomposition"},
                            **({"decomposition": dec} if dec is not None else {})}) for r in runs)))


def _verdict(results, claim):
    return next(s for s in CLAIMS if s.claim == claim).row(Evidence(results)).verdict


def _states(seed=0, mode="own", n=4):
    rng = np.random.default_rng(seed)
    return [fake_states(rng, states=60, mode=mode) for _ in range(n)]


def test_llm_dynamics_rows_fail_on_flipped_shuffled_or_random_terms(drawn):
    results, _ = drawn
    states = _states()
    good = _with(results, decomposition(states))
    for claim in LLM_ROWS:
        assert _verdict(good, claim) == HOLDS, claim
        term = TERM_OF[claim]
        noise = [{**s, {"theorem": "dH_thm1", "theorem2": "dH_thm2", "own": "dH_own"}[term]:
                  np.random.default_rng(i).standard_normal(s["dH_obs"].size) * np.abs(s["dH_obs"]).mean()}
                 for i, s in enumerate(states)]
        for wrong in (decomposition(states, flip=term), decomposition(states, shuffle=term, seed=1),
                      decomposition(noise)):
            assert _verdict(_with(results, wrong), claim) in (FAILS, PARTLY), claim
            assert _verdict(_with(results, wrong), claim) != HOLDS
        assert _verdict(_with(results, decomposition(states, flip=term)), claim) == FAILS, claim
    # cross-state dominated updates: the mechanism row fails and says why
    cross = _with(results, decomposition(_states(mode="cross")))
    row = next(s for s in CLAIMS if s.claim == LLM_ROWS[2]).row(Evidence(cross))
    assert row.verdict == FAILS and "cross share" in row.reason


def test_old_run_folders_read_not_measured(drawn):
    results, _ = drawn
    old = _with(results, None)
    rows = {r.claim: r for r in claim_rows(old)}
    for claim in LLM_ROWS:
        assert rows[claim].verdict == NA and rows[claim].ours == NOT_DECOMPOSED


def test_checks_are_apart_and_not_counted(drawn):
    results, _ = drawn
    rows = claim_rows(_with(results, decomposition(_states())))
    checks = [r for r in rows if r.check]
    assert {r.claim for r in checks} >= {s.claim for s in DYNAMICS_CLAIMS if s.check}
    assert sum(summarize(rows).counts.values()) == len(rows) - len(checks)
    lin = "linearised network change predicts each state's dH (LLM)"
    assert _verdict(_with(results, decomposition(_states())), lin) == HOLDS
    assert _verdict(_with(results, decomposition(_states(), flip="linearised")), lin) == FAILS


def test_sim_theorem_rows_fail_on_flipped_or_shuffled_predictions(drawn):
    results, _ = drawn
    th = results.theory
    t = th.theorem[0]
    rng = np.random.default_rng(0)
    for claim, part in zip(SIM_ROWS, ("per_state", "per_step")):
        assert _verdict(results, claim) in (HOLDS, PARTLY), claim
        a = getattr(t, part)
        obs = rng.standard_normal(300)
        pred = obs + 0.3 * rng.standard_normal(300)
        for bad in (agreement(obs, -pred, fit_eta=True), agreement(obs, rng.permutation(pred), fit_eta=True)):
            wrong = replace(results, theory=replace(th, theorem=(replace(t, **{part: bad}),)))
            assert _verdict(wrong, claim) == FAILS, claim
        assert a.n > 0


def test_fig8_rows_grade_the_raw_series_and_fail_when_reversed(drawn):
    results, _ = drawn
    cov = results.covariance
    claims = ("Cov and -dH have similar dynamics (LLM)", "Cov and -dH have similar dynamics (tabular LM)",
              "response-level Cov (Eqs. 8-9) and -dH have similar dynamics (tabular LM)")
    for claim in claims[:2]:
        assert _verdict(results, claim) in (HOLDS, PARTLY), claim
    sim = cov.first("sim")
    assert sim.cov_response is not None  # the simulator records Eq. 8
    for r in cov.cov_dh:
        assert np.isfinite(r.pearson_raw) and r.pearson_raw_ci[0] <= r.pearson_raw <= r.pearson_raw_ci[1]
    # the LLM fixture does not log cov/response_eq8: not measured, not failed
    assert _verdict(results, "response-level Cov (Eqs. 8-9) and -dH have similar dynamics (LLM)") == NA
    rng = np.random.default_rng(0)
    for r in cov.cov_dh:
        noise = rng.standard_normal(r.step.size)
        x, ci = block_bootstrap_corr(noise, np.roll(noise, 7) + rng.standard_normal(r.step.size))
        shuffled = replace(results, covariance=replace(cov, cov_dh=tuple(
            replace(q, pearson_raw=x, pearson_raw_ci=ci, response_pearson_raw=x, response_pearson_raw_ci=ci)
            for q in cov.cov_dh)))
        flipped = replace(results, covariance=replace(cov, cov_dh=tuple(
            replace(q, pearson_raw=-q.pearson_raw,
                    pearson_raw_ci=(-q.pearson_raw_ci[1], -q.pearson_raw_ci[0]),
                    response_pearson_raw=-q.response_pearson_raw,
                    response_pearson_raw_ci=(-q.response_pearson_raw_ci[1], -q.response_pearson_raw_ci[0]))
            for q in cov.cov_dh)))
        for claim in claims:
            assert _verdict(flipped, claim) == FAILS, claim
            assert _verdict(shuffled, claim) != HOLDS, claim


def test_dynamics_figure_draws_one_panel_per_term_and_skips_absent_ones(drawn, tmp_path):
    _, dirs = drawn
    res = plot_dynamics(dirs[:1], tmp_path / "dyn")
    assert res.files and all(p.is_file() for p in res.files)
    assert {"dH_own", "dH_cross", "dH_hist", "dH_thm1"} <= set(dynamics_data(dirs[:1]).runs[0].states)
    # an old run folder: only Lemma 1 arrays -> the identity panel alone
    from rundir.diagnostics_files import save_per_state
    old = tmp_path / "old"
    write_llm_run(old, steps=4)
    s = _states(n=1)[0]
    save_per_state(old, 0, {k: s[k] for k in ("entropy", "dH_obs", "dH_first", "dH_second", "dH_tab")})
    import json
    lines = (old / "metrics.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "diag/states": 60.0})
    (old / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    from figures.fig_dynamics import panels
    old_states = dynamics_data([old]).runs[0].states
    assert [k for k, _ in panels(old_states)] == ["dH_first"]
    assert plot_dynamics([old], tmp_path / "old_fig").files


def test_agreement_rejects_bad_inputs_and_fits_a_nonnegative_eta():
    with pytest.raises(ValueError):
        agreement(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        agreement(np.ones(3), np.ones(3), weights=-np.ones(3))
    with pytest.raises(ValueError):
        block_bootstrap_corr(np.zeros(5), np.zeros(5), block=0)
    obs = np.linspace(-1, 1, 50)
    assert agreement(obs, 3 * obs, fit_eta=True).eta == pytest.approx(1 / 3)
    assert agreement(obs, -obs, fit_eta=True).eta == 0.0 and agreement(obs, -obs, fit_eta=True).r2 <= 1e-12
