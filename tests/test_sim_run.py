"""simulators runs end to end: what is recorded, reproducibility, run directories, the CLI, and the
GRPO rule through theory.objectives."""

import json

import numpy as np
import pytest
import torch
from tolerances import ATOL_F64, EXACT_F64

from cli import simulate as cli
from simulators.config import SimConfig
from simulators.rules import make_rule, reinforce_logit_step
from simulators.run import load_run, run_to_dir, simulate
from simulators.worlds import TokenBatch, make_world
from theory import first_order_entropy_change, second_order_entropy_change

objectives = pytest.importorskip("theory.objectives")



WORLDS = ["bandit", "contextual_bandit", "mdp", "tabular_lm"]
SMALL = dict(instances=2, seeds=2, n_states=3, n_actions=4, vocab=3, horizon=3, steps=6)


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("rule", ["pg", "npg", "entropy_npg", "reinforce", "grpo"])
def test_recorded_predictions_are_theory_of_the_recorded_step(world, rule):
    """dH_first / dH_second equal theory's Lemma 1 / second order of the recorded logit change."""
    cfg = SimConfig(world=world, rule=rule, lr=0.2, record_logits=True, init="random", **SMALL)
    run = simulate(cfg)
    z = torch.from_numpy(run.arrays["logits"])  # [T+1, B, S, n]
    delta = z[1:] - z[:-1]
    np.testing.assert_allclose(
        run.arrays["dH_first"], first_order_entropy_change(z[:-1], delta).numpy(), atol=EXACT_F64, rtol=0
    )
    np.testing.assert_allclose(
        run.arrays["dH_second"], second_order_entropy_change(z[:-1], delta).numpy(), atol=EXACT_F64, rtol=0
    )
    assert run.arrays["dH_obs"].shape == (cfg.steps, cfg.batch, make_world(cfg, torch.Generator()).n_states)
    assert np.isfinite(run.arrays["agg_dH_obs"]).all()
    if rule == "pg":  # Theorem 1 is Lemma 1 of the exact PG step
        np.testing.assert_allclose(run.arrays["dH_thm1"], run.arrays["dH_first"], atol=ATOL_F64, rtol=0)
    if rule in ("reinforce", "grpo"):
        assert np.isfinite(run.arrays["cov_eq10"]).all() and np.isfinite(run.arrays["sampled_reward"]).all()
    else:
        assert np.isnan(run.arrays["cov_eq10"]).all()


@pytest.mark.parametrize(
    "cfg",
    [
        SimConfig(world="tabular_lm", rule="reinforce", **SMALL),
        SimConfig(
            world="bandit",
            rule="grpo",
            objective="clip_cov",
            lr=1.0,
            objective_kwargs={"clip_ratio": 0.05, "cov_lb": -10.0, "cov_ub": 10.0},
            **SMALL,
        ),
        SimConfig(world="tabular_lm", rule="grpo", objective="kl_cov", optimizer="adam", lr=0.1, **SMALL),
    ],
)
def test_cpu_runs_are_bit_for_bit_reproducible(cfg):
    a, b = simulate(cfg).arrays, simulate(cfg).arrays
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    c = simulate(SimConfig(**{**cfg.to_dict(), "seed": 1})).arrays
    assert not np.array_equal(a["dH_obs"], c["dH_obs"])


def test_save_and_load_round_trip(tmp_path):
    cfg = SimConfig(world="mdp", rule="reinforce", **SMALL)
    run = run_to_dir(cfg, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    assert loaded.config == cfg and loaded.summary == run.summary
    assert loaded.arrays.keys() == run.arrays.keys()
    for key in run.arrays:
        assert np.array_equal(loaded.arrays[key], run.arrays[key], equal_nan=True)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["config"]["world"] == "mdp" and "torch" in stored["environment"]
    assert not list((tmp_path / "run").glob("*.tmp"))
    with pytest.raises(ValueError, match="missing"):
        load_run(tmp_path)


def test_grpo_one_sgd_epoch_is_the_sampled_policy_gradient():
    """With one SGD epoch, ρ ≡ 1 and ppo_clip's gradient is token-mean REINFORCE with the group advantages."""
    for world in ("contextual_bandit", "tabular_lm"):
        cfg = SimConfig(
            world=world, rule="grpo", objective="ppo_clip", epochs=1, lr=0.3, init="random", **SMALL
        )
        gen = torch.Generator().manual_seed(0)
        w = make_world(cfg, gen)
        z = torch.randn(cfg.batch, w.n_states, w.n_actions, generator=gen, dtype=torch.float64)
        res = make_rule(cfg, w, z, gen).step(z, w.exact(z))
        b = res.batch
        n_tok = b.mask[0].sum()
        adv = res.token_adv[..., 0]
        plain = TokenBatch(
            b.state_ids,
            b.actions,
            b.mask,
            b.rewards,
            b.baseline,
            torch.full_like(b.coef, 1.0 / float(n_tok)),
            b.group_size,
            b.state_major,
        )
        expected = reinforce_logit_step(z, plain, adv, cfg.lr)
        torch.testing.assert_close(res.logits - z, expected, atol=1e-12, rtol=0)


def test_grpo_inner_epochs_move_ratios_and_clip():
    cfg = SimConfig(
        world="bandit",
        rule="grpo",
        objective="ppo_clip",
        epochs=4,
        lr=2.0,
        samples=16,
        instances=4,
        steps=5,
        n_actions=6,
    )
    run = simulate(cfg)
    key = lambda name: "metric_" + name.replace("/", ".")  # noqa: E731  (recorder's naming)
    assert run.arrays[key(getattr(objectives, "METRIC_CLIP_FRAC", "objective/clip_frac"))].max() > 0
    kl = SimConfig(**{**cfg.to_dict(), "objective": "kl_cov", "objective_kwargs": {"kl_ratio": 0.05}})
    selected = key(getattr(objectives, "METRIC_SELECTED_FRAC", "objective/selected_frac"))
    assert simulate(kl).arrays[selected].max() > 0


def test_grpo_rejects_bad_objective_settings():
    with pytest.raises(ValueError, match="accepts: eps_low, eps_high"):  # raised when SimConfig is built
        simulate(SimConfig(world="bandit", rule="grpo", objective="ppo_clip",
                           objective_kwargs={"clip_ratio": 0.1}))
    with pytest.raises(ValueError, match="clip_cov"):
        simulate(SimConfig(world="bandit", rule="grpo", objective="clip-cov"))


def _parse(argv):
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_runs_and_writes_a_run_directory(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [
        "--world",
        "tabular_lm",
        "--rule",
        "grpo",
        "--objective",
        "clip_higher",
        "--steps",
        "3",
        "--seeds",
        "2",
        "--vocab",
        "3",
        "--horizon",
        "2",
        "--objective-param",
        "eps_high=0.3",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert cli.run(_parse(argv)) == 0
    run = load_run(out)
    assert run.config.objective_kwargs == {"eps_high": 0.3} and run.arrays["dH_obs"].shape[:2] == (3, 2)
    assert "median_rel_err_first" in capsys.readouterr().out


def test_cli_fails_fast_on_unknown_names(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _parse(["--world", "grid", "--out", str(tmp_path)])
    assert "tabular_lm" in capsys.readouterr().err
    args = _parse(["--rule", "grpo", "--objective", "ppo", "--out", str(tmp_path / "x")])
    assert cli.run(args) == 2
    assert "kl_cov" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_entropy_mech_simulate_is_wired(tmp_path):
    from cli.main import main

    assert (
        main(
            [
                "simulate",
                "--world",
                "bandit",
                "--rule",
                "npg",
                "--steps",
                "2",
                "--no-progress",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    assert load_run(tmp_path / "r").config.rule == "npg"


@pytest.mark.gpu
@pytest.mark.parametrize("rule", ["pg", "reinforce", "grpo"])
def test_cuda_matches_cpu(rule):
    cfg = SimConfig(world="tabular_lm", rule=rule, objective="ppo_clip", **SMALL)
    cpu = simulate(cfg).arrays
    gpu = simulate(SimConfig(**{**cfg.to_dict(), "device": "cuda"})).arrays
    for key in ("dH_obs", "dH_first", "entropy", "reward"):
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-9, rtol=1e-9)


def test_weighted_median_and_summary_keys():
    from simulators.run import weighted_median

    assert weighted_median(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])) == 2.0
    assert weighted_median(np.array([3.0, 1.0, 2.0]), np.array([0.0, 0.1, 5.0])) == 2.0
    assert np.isnan(weighted_median(np.array([]), np.array([])))
    run = simulate(SimConfig(world="tabular_lm", rule="npg", lr=0.3, **SMALL))
    assert {
        "wmedian_rel_err_first",
        "wmedian_rel_err_second",
        "agg_median_rel_err_first",
    } <= run.summary.keys()
    np.testing.assert_allclose(run.arrays["state_weight"].sum(-1), 1.0, atol=ATOL_F64)
    np.testing.assert_allclose(
        run.arrays["agg_entropy"], (run.arrays["state_weight"] * run.arrays["entropy"]).sum(-1), atol=ATOL_F64
    )


def test_grpo_objective_hyperparameters_are_checked_before_the_run():
    """The objective's own guard (ratios are fractions <= 0.05) fires at construction, not mid-run."""
    with pytest.raises(ValueError, match=r"clip_ratio=2 is outside its valid range \[0, 1\]"):
        SimConfig(world="bandit", rule="grpo", objective="clip_cov", objective_kwargs={"clip_ratio": 2.0})
    cfg = SimConfig(world="bandit", rule="grpo", objective="clip_cov")
    cfg.objective_kwargs = {"clip_ratio": 2.0}  # changed after construction: make_rule checks again
    world = make_world(cfg, torch.Generator())
    with pytest.raises(ValueError):
        make_rule(cfg, world, torch.zeros(1, 1, cfg.n_actions, dtype=torch.float64), torch.Generator())


def test_grpo_records_the_response_level_covariance_of_eqs_8_9():
    """``cov_eq8`` of a sampled run is theory.covariance.response_covariance of the batch (one group per
    run); exact rules record NaN."""
    from simulators.recorder import response_level_covariance
    from theory.covariance import response_covariance

    run = simulate(SimConfig(world="tabular_lm", rule="grpo", vocab=3, horizon=2, samples=8, steps=3,
                             instances=4, init="random", lr=0.05))
    assert run.arrays["cov_eq8"].shape == (3, 4) and np.isfinite(run.arrays["cov_eq8"]).all()
    exact = simulate(SimConfig(world="bandit", rule="pg", steps=2, instances=2))
    assert np.isnan(exact.arrays["cov_eq8"]).all()
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(2, 5, 3, generator=g, dtype=torch.float64)
    adv = torch.randn(2, 5, 1, generator=g, dtype=torch.float64).expand(2, 5, 3)
    mask = torch.ones(2, 5, 3, dtype=torch.bool)
    got = response_level_covariance(lp, adv.contiguous(), mask)
    ref = response_covariance(lp[1], mask[1], adv[1, :, 0], torch.zeros(5, dtype=torch.long))["batch_mean"]
    assert torch.allclose(got[1], ref)
    with pytest.raises(ValueError, match="one \\[B, M, T\\] shape"):
        response_level_covariance(lp, adv[:1].contiguous(), mask)
