"""RL trainer of llm_rl: smoke run, exact resume, micro-batch invariance, NaN stop, metrics.

Uses a tiny random Qwen2 model and a test-only task whose reward (even response length) is ~50% for a
random policy, so groups have reward variance from the first step without any pretraining.
"""

import json
from dataclasses import dataclass

import pytest
import torch
import transformers

from llm_rl import tasks as tasks_pkg
from llm_rl.config import DataConfig, ObjectiveConfig, OptimConfig, RolloutConfig, TrainConfig
from rundir.records import read_records
from llm_rl.metrics import KEYS, known_keys
from llm_rl.model import build_default_policy, save_policy
from llm_rl.tasks.base import Problem, Task
from llm_rl.trainer import NonFiniteLossError, Trainer, resolve_objective_name

transformers.utils.logging.disable_progress_bar()


@dataclass(frozen=True)
class EvenLengthTask(Task):
    """Reward 1 iff the response has an even number of characters (test-only)."""

    n_digits: int = 3
    name = "even_length"
    max_response_chars = 6

    def sample(self, rng):
        return Problem(str(rng.randint(0, 10**self.n_digits - 1)) + "=", 0)

    def solution(self, problem, rng):
        return "00"

    def wrong_solution(self, problem, rng):
        return "0"

    def verify(self, problem, response):
        return float(len(response) % 2 == 0)


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    monkeypatch.setitem(tasks_pkg.TASKS, "even_length", EvenLengthTask)
    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(tmp_path / "cache"))
    model, tok = build_default_policy(seed=0, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64, max_positions=32)
    return save_policy(model, tok, tmp_path / "model")


def make_config(model_dir, **over):
    objective = over.pop("objective", ObjectiveConfig())
    optim = over.pop("optim", OptimConfig(micro_batch_size=8, num_minibatches=2, lr=3e-3))
    rollout = over.pop("rollout", RolloutConfig(prompts_per_step=4, group_size=4, max_new_tokens=6))
    kw = {"val_every": 100, "checkpoint_every": 100, **over}
    return TrainConfig(model=str(model_dir), device="cpu",
                       data=DataConfig(task="even_length", n_train=64, n_val=4), rollout=rollout,
                       objective=objective, optim=optim, **kw)


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_smoke_every_parameter_changes_and_metrics_documented(tiny_model, tmp_path):
    cfg = make_config(tiny_model, steps=2, val_every=1, tensorboard=True)
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    before = params(tr.model)
    tr.train()
    after = params(tr.model)
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, f"parameters that did not change: {unchanged}"
    recs = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [0, 1, 2]
    for key in ("entropy/train", "cov/batch_mean", "loss/policy", "time/rollout_s", "reward/mean"):
        assert key in recs[0]
    assert "val/acc" in recs[0] and "val/acc" in recs[-1]
    assert recs[0]["entropy/train"] > 1.0  # random init: near-uniform over ~89 tokens
    assert set().union(*recs) <= set(known_keys())
    cfg_json = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg_json["config"]["objective_resolved"] == "ppo_clip" and "environment" in cfg_json
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_metrics_table_documents_every_key():
    import llm_rl.metrics as mm

    for key in KEYS:
        assert f"\n{key} " in mm.__doc__ or f"\n{key}\n" in mm.__doc__, key


def test_every_update_metric_declares_its_reduction():
    from theory.objectives import METRIC_DESCRIPTIONS

    import llm_rl.metrics as mm

    update_keys = {mm.LOSS_POLICY, mm.LOSS_TOTAL, mm.OPTIM_GRAD_NORM, mm.OPTIM_LR, mm.OPTIM_UPDATES}
    assert set(METRIC_DESCRIPTIONS) | update_keys == set(mm.REDUCTIONS)
    acc = mm.UpdateMetrics()
    with pytest.raises(ValueError, match="no reduction"):
        acc.add_micro_batch({"objective/undeclared": 1.0}, tokens=1.0)
    with pytest.raises(ValueError, match="does not apply"):
        acc.add_micro_batch({mm.OPTIM_LR: 1.0}, tokens=1.0)


def test_update_metrics_reduce_as_declared():
    import llm_rl.metrics as mm
    from llm_rl.distributed import DistInfo

    acc = mm.UpdateMetrics()
    for step in range(2):  # two optimizer steps of two micro-batches (3 and 1 tokens)
        acc.add_micro_batch({"objective/clip_frac": 0.5, mm.LOSS_POLICY: 1.0 + step}, tokens=3.0)
        acc.add_micro_batch({"objective/clip_frac": 1.0, mm.LOSS_POLICY: 2.0}, tokens=1.0)
        acc.add_optimizer_step({mm.OPTIM_GRAD_NORM: 2.0 * step, mm.OPTIM_LR: 0.1 * (step + 1),
                                mm.OPTIM_UPDATES: 1})
    out = acc.result(DistInfo())
    assert out["objective/clip_frac"] == pytest.approx((0.5 * 3 + 1.0) * 2 / 8)  # token-weighted mean
    assert out[mm.LOSS_POLICY] == pytest.approx((1 + 2 + 2 + 2) / 2)  # summed per step, mean over steps
    assert out[mm.OPTIM_GRAD_NORM] == 1.0 and out[mm.OPTIM_LR] == pytest.approx(0.2)
    assert out[mm.OPTIM_UPDATES] == 2 and isinstance(out[mm.OPTIM_UPDATES], int)


@pytest.mark.parametrize("objective", ["grpo", "kl_cov"])
def test_resume_is_bitwise_exact(tiny_model, tmp_path, objective):
    oc = ObjectiveConfig(name=objective, params={"kl_ratio": 0.05} if objective == "kl_cov" else {})
    full = Trainer(make_config(tiny_model, steps=4, objective=oc), tmp_path / "full", progress=False)
    full.train()
    half_cfg = make_config(tiny_model, steps=4, objective=oc, checkpoint_every=2)
    first = Trainer(half_cfg, tmp_path / "half", progress=False)
    # run 2 of 4 steps, then "kill": a fresh Trainer resumes from the step-2 checkpoint
    first.cfg.steps = 2
    first.train()
    first.cfg.steps = 4
    resumed = Trainer(half_cfg, tmp_path / "half", resume=True, progress=False)
    assert resumed.step == 2
    resumed.train()
    a, b = params(full.model), params(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma = [r for r in read_records(tmp_path / "full" / "metrics.jsonl")]
    mb = [r for r in read_records(tmp_path / "half" / "metrics.jsonl")]
    assert [r["step"] for r in mb] == [r["step"] for r in ma]
    for ra, rb in zip(ma, mb):
        for k in ("entropy/train", "loss/policy", "reward/mean"):
            assert ra.get(k) == rb.get(k), (ra["step"], k)


@pytest.mark.parametrize("objective,prm", [("kl_cov", {"kl_ratio": 0.05}),
                                           ("clip_cov", {"clip_ratio": 0.05, "cov_lb": -1.0, "cov_ub": 5.0})])
def test_selection_invariant_to_micro_batch_size(tiny_model, tmp_path, objective, prm):
    """One rollout step with micro-batches of 16 (= mini-batch) vs 3: same selection, same update."""
    results = []
    for mb in (16, 3):
        cfg = make_config(tiny_model, steps=1, objective=ObjectiveConfig(name=objective, params=prm),
                          optim=OptimConfig(micro_batch_size=mb, num_minibatches=1, ppo_epochs=2, lr=3e-3))
        tr = Trainer(cfg, tmp_path / f"mb{mb}", progress=False)
        rec = tr.train()[0]
        results.append((rec, params(tr.model)))
    (r1, p1), (r2, p2) = results
    assert r1["objective/selected_count"] == r2["objective/selected_count"] > 0
    assert r1["loss/policy"] == pytest.approx(r2["loss/policy"], rel=1e-4, abs=1e-6)
    for k in p1:
        torch.testing.assert_close(p1[k], p2[k], rtol=1e-4, atol=1e-5)


def test_nan_loss_stops_and_keeps_last_checkpoint(tiny_model, tmp_path, monkeypatch):
    cfg = make_config(tiny_model, steps=3, checkpoint_every=1)
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    import llm_rl.update as update_mod  # the update step's differentiable forward

    real_score = update_mod.score

    def poisoned(model, *a, **k):
        out = real_score(model, *a, **k)
        if tr.step == 1 and torch.is_grad_enabled():
            return out * float("nan")
        return out

    monkeypatch.setattr(update_mod, "score", poisoned)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        tr.train()
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_unknown_names_and_bad_values_fail_fast(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="choose one of: .*clip_cov.*grpo.*kl_cov"):
        resolve_objective_name("ppo")
    with pytest.raises(ValueError, match="takes no parameter"):
        Trainer(make_config(tiny_model, objective=ObjectiveConfig(name="kl_cov", params={"clip_ratio": 0.1})),
                tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="choose one of"):
        ObjectiveConfig(agg_mode="mean")
    with pytest.raises(ValueError, match="group_size"):
        RolloutConfig(group_size=1)
    with pytest.raises(ValueError, match="positive int"):
        OptimConfig(micro_batch_size=0)


def test_kl_cov_on_policy_warns(tiny_model, tmp_path):
    cfg = make_config(tiny_model, objective=ObjectiveConfig(name="kl_cov"),
                      optim=OptimConfig(num_minibatches=1, ppo_epochs=1))
    with pytest.warns(UserWarning, match="fully on-policy"):
        Trainer(cfg, tmp_path / "r", progress=False)


def test_additive_terms_drgrpo_and_aggregation_modes(tiny_model, tmp_path):
    oc = ObjectiveConfig(name="clip_higher", advantage="drgrpo", agg_mode="seq-mean-token-sum-norm",
                         entropy_coef=0.01, ref_kl_coef=0.01, ref_kl_estimator="k2")
    rec = Trainer(make_config(tiny_model, steps=1, objective=oc), tmp_path / "r", progress=False).train()[0]
    assert rec["objective/entropy"] > 0 and rec["objective/ref_kl_k2"] >= 0
    assert rec["loss/total"] != rec["loss/policy"]
    for mode in ("seq-mean-token-mean", "seq-mean-token-sum"):
        oc = ObjectiveConfig(agg_mode=mode)
        rec = Trainer(make_config(tiny_model, steps=1, objective=oc), tmp_path / mode,
                      progress=False).train()[0]
        assert rec["optim/updates"] == 2
