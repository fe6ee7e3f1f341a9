"""Entropy-dynamics diagnostics: the same functions in two worlds (tabular LM and a neural model)."""

import math

import pytest
import torch

import theory as T
from llm_rl.diagnostics import SUMMARY_KEYS, diagnose_step, top_percent_means
from simulators.config import SimConfig
from simulators.run import simulate

F64 = torch.float64


def test_predictions_equal_the_simulators_own_on_the_tabular_lm():
    cfg = SimConfig(world="tabular_lm", rule="grpo", objective="ppo_clip", optimizer="sgd", epochs=1,
                    vocab=4, horizon=3, samples=8, lr=0.5, steps=3, record_logits=True, init="random")
    run = simulate(cfg)
    logits = torch.from_numpy(run.arrays["logits"])  # [steps + 1, B, S, V]
    n_states = logits.shape[2]
    dummy = torch.zeros(1, dtype=torch.long)
    for t in range(cfg.steps):
        _, per_state = diagnose_step(logits[t, 0], logits[t + 1, 0], dummy, torch.zeros(1, dtype=F64),
                                     dummy, dummy, chunk_rows=5)
        for mine, sims in (("dH_obs", "dH_obs"), ("dH_first", "dH_first"), ("dH_second", "dH_second"),
                           ("entropy", "entropy")):
            ref = torch.from_numpy(run.arrays[sims][t, 0])
            assert per_state[mine].shape == (n_states,)
            assert torch.allclose(per_state[mine], ref, atol=1e-6, rtol=1e-5), mine  # float32 vocab pass


def _tabular_sgd_step(z, states, tokens, adv, lr):
    """One SGD step of the token-mean loss −(1/N) Σ_i A_i log π(a_i | s_i) on a free logit table."""
    table = z.clone().requires_grad_(True)
    logp = torch.log_softmax(table[states], -1).gather(-1, tokens[:, None]).squeeze(-1)
    (-(adv * logp).mean()).backward()
    return (table - lr * table.grad).detach()


def test_theorem1_prediction_is_exact_first_order_for_sgd_on_free_logits():
    g = torch.Generator().manual_seed(0)
    n_states, vocab, n = 6, 11, 40
    z = torch.randn(n_states, vocab, generator=g, dtype=F64) * 2
    states = torch.randint(0, n_states, (n,), generator=g)
    tokens = torch.multinomial(torch.softmax(z[states], -1), 1, generator=g).squeeze(-1)
    adv = torch.randn(n, generator=g, dtype=F64)
    lr = 1e-3
    z_new = _tabular_sgd_step(z, states, tokens, adv, lr)
    w = torch.full((n,), 1.0 / n, dtype=F64)  # the token-mean loss's aggregation weights
    summary, per_state = diagnose_step(z, z_new, tokens, adv, states, states, weights=w, step_size=lr)
    # Δz_s = η Σ_{i at s} w_i A_i (e_{a_i} − π_s), so Lemma 1 at s is exactly Theorem 1's per-sample form
    assert torch.allclose(per_state["dH_first"], per_state["dH_thm1"], atol=1e-12, rtol=1e-6)
    # the same per-sample formula as theory.sample_entropy_contribution
    per_sample = T.sample_entropy_contribution(z[states], tokens[:, None], adv[:, None], 1.0).squeeze(-1)
    ref = torch.zeros(n_states, dtype=F64).index_add_(0, states, per_sample)
    assert torch.allclose(per_state["dH_thm1"], lr / n * ref, atol=1e-9, rtol=1e-5)
    assert summary["diag/r2_first"] > 0.99 and summary["diag/sign_acc_first"] == 1.0
    assert summary["diag/r2_thm1"] > 0.99 and summary["diag/sign_acc_thm1"] == 1.0
    assert summary["diag/eta_thm1"] == lr and summary["diag/eta_thm1_from_lr"] == 1.0
    # fitted (sign-constrained) η recovers the step size
    fitted, _ = diagnose_step(z, z_new, tokens, adv, states, states, weights=w)
    assert math.isclose(fitted["diag/eta_thm1"], lr, rel_tol=0.01) and fitted["diag/eta_thm1_from_lr"] == 0.0
    assert set(summary) <= set(SUMMARY_KEYS)


def test_a_sign_flipped_or_shuffled_theorem_prediction_fails():
    g = torch.Generator().manual_seed(3)
    n_states, vocab, n = 12, 9, 96
    z = torch.randn(n_states, vocab, generator=g, dtype=F64) * 2
    states = torch.arange(n_states).repeat(n // n_states)
    tokens = torch.multinomial(torch.softmax(z[states], -1), 1, generator=g).squeeze(-1)
    adv = torch.randn(n, generator=g, dtype=F64)
    z_new = _tabular_sgd_step(z, states, tokens, adv, 1e-3)
    good, _ = diagnose_step(z, z_new, tokens, adv, states, states)
    flipped, ps = diagnose_step(z, z_new, tokens, -adv, states, states)  # wrong sign of the update
    shuffled, _ = diagnose_step(z, z_new, tokens, adv[torch.randperm(n, generator=g)], states, states)
    assert good["diag/r2_thm1"] > 0.99 and good["diag/sign_acc_thm1"] == 1.0
    # the sign-constrained fit cannot rescue a flipped prediction: η = 0, R² <= 0, signs all wrong
    assert flipped["diag/eta_thm1"] == 0.0 and flipped["diag/r2_thm1"] <= 0.0
    assert flipped["diag/sign_acc_thm1"] == 0.0 and flipped["diag/corr_thm1"] < -0.99
    assert shuffled["diag/r2_thm1"] < 0.5 and shuffled["diag/sign_acc_thm1"] < 0.8
    with pytest.raises(ValueError, match="step_size"):
        diagnose_step(z, z_new, tokens, adv, states, states, step_size=-1.0)


def test_first_order_error_shrinks_quadratically_with_the_step():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 9, generator=g, dtype=F64)
    states = torch.arange(5).repeat(4)
    tokens = torch.multinomial(torch.softmax(z[states], -1), 1, generator=g).squeeze(-1)
    adv = torch.randn(20, generator=g, dtype=F64)
    errs = []
    for lr in (0.4, 0.2):
        _, ps = diagnose_step(z, _tabular_sgd_step(z, states, tokens, adv, lr), tokens, adv, states, states)
        errs.append((ps["dH_obs"] - ps["dH_first"]).abs().sum().item())
    assert 3.0 < errs[0] / errs[1] < 5.0


def test_table1_groups_and_bad_inputs():
    cov = torch.arange(10000, dtype=F64)
    means = top_percent_means(cov)
    assert means[0.02] == 9998.5 and means[100.0] == pytest.approx(4999.5)
    with pytest.raises(ValueError, match="S, V"):
        diagnose_step(torch.zeros(3), torch.zeros(3), torch.zeros(1, dtype=torch.long), torch.zeros(1),
                      torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="state_index"):
        diagnose_step(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(1, dtype=torch.long), torch.zeros(1),
                      torch.tensor([5]), torch.zeros(1, dtype=torch.long))


# ----------------------------------------------------------------------------------------------------
# inside the trainer, on a small neural model
# ----------------------------------------------------------------------------------------------------

from test_llm_trainer import make_config, tiny_model as tiny_model  # noqa: E402  (fixture reuse)

from llm_rl.config import OptimConfig  # noqa: E402
from llm_rl.diagnostics import summarize_run  # noqa: E402
from rundir.diagnostics_files import load_per_state  # noqa: E402
from rundir.records import read_records  # noqa: E402
from llm_rl.trainer import Trainer  # noqa: E402


def _diag_run(tiny_model, out, lr, steps=2):
    cfg = make_config(tiny_model, steps=steps, diagnose_every=1,
                      optim=OptimConfig(micro_batch_size=8, num_minibatches=1, lr=lr, betas=(0.9, 0.999)))
    Trainer(cfg, out, progress=False).train()
    return [r for r in read_records(out / "metrics.jsonl") if "diag/states" in r]


def test_trainer_writes_diagnostics_and_lemma1_holds_at_tiny_lr(tiny_model, tmp_path):
    rows = _diag_run(tiny_model, tmp_path / "a", lr=1e-5)
    assert len(rows) == 2
    for r in rows:
        assert r["diag/states"] > 10 and r["diag/r2_first"] >= 0.99
        assert 0 < r["time/diagnose_s"] < r["time/update_s"]
    states = load_per_state(tmp_path / "a")
    assert sorted(states) == [0, 1] and states[0]["dH_obs"].shape == states[0]["dH_first"].shape
    summary = summarize_run(tmp_path / "a")
    assert summary["diagnosed_steps"] == 2 and summary["pooled_r2_first"] >= 0.99


def test_first_order_error_shrinks_about_4x_when_lr_halves(tiny_model, tmp_path):
    # SGD-like regime: plain SGD is not what the trainer uses (AdamW), but Adam's first step is
    # lr·sign(g), so the logit change still scales linearly with lr and the error quadratically
    errs = []
    for lr in (2e-4, 1e-4):
        _diag_run(tiny_model, tmp_path / f"lr{lr}", lr=lr, steps=1)
        ps = load_per_state(tmp_path / f"lr{lr}")[0]
        errs.append(float(abs(ps["dH_obs"].astype(float) - ps["dH_first"].astype(float)).sum()))
    assert 3.0 < errs[0] / errs[1] < 5.0, errs


def test_diagnose_cli(tiny_model, tmp_path, capsys):
    import json

    from cli.main import main

    _diag_run(tiny_model, tmp_path / "run", lr=1e-5, steps=1)
    assert main(["diagnose", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "R² over all stored states (Lemma 1: identity)" in out
    for label in ("own samples", "other tokens (cross)", "optimizer history", "linearised (sum)",
                  "Theorem 1"):
        assert label in out
    assert main(["diagnose", "--json", str(tmp_path / "run")]) == 0
    res = json.loads(capsys.readouterr().out)[str(tmp_path / "run")]
    terms = {"own", "cross", "history", "linearised", "theorem", "theorem2"}
    assert set(res["run"]["decomposition"]) >= terms
    step = res["steps"][0]
    assert set(step) >= {"step", "own", "cross", "history", "linearised", "theorem", "observed", "closure"}
    total = step["own"]["sum"] + step["cross"]["sum"] + step["history"]["sum"]
    assert total == pytest.approx(step["linearised"]["sum"], rel=1e-3, abs=1e-12)
    assert main(["diagnose", str(tmp_path)]) == 2
