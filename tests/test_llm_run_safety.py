"""Nothing lost, nothing silent: the trainer under faults (a poisoned gradient, non-finite weights, no
learning signal) and its run folder (owned by one run; --resume continues exactly that run)."""

import json
from dataclasses import dataclass

import pytest
import torch
import transformers
from test_llm_trainer import EvenLengthTask, make_config

from cli.main import main
from llm_rl import tasks as tasks_pkg
from llm_rl.config import ObjectiveConfig, OptimConfig
from llm_rl.model import build_default_policy, save_policy
from llm_rl.resume import NoUpdatesError
from llm_rl.trainer import NonFiniteLossError, Trainer
from rundir.ownership import RunDirError

transformers.utils.logging.disable_progress_bar()


@dataclass(frozen=True)
class NeverRightTask(EvenLengthTask):
    """Reward always 0: every group has zero variance, so dynamic sampling drops them all."""

    name = "never_right"

    def verify(self, problem, response):
        return 0.0


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(tasks_pkg.TASKS, "even_length", EvenLengthTask)
    monkeypatch.setitem(tasks_pkg.TASKS, "never_right", NeverRightTask)
    model, tok = build_default_policy(seed=0, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64, max_positions=32)
    return save_policy(model, tok, tmp_path / "model")


OBJECTIVES = {"grpo": {}, "clip_cov": {"clip_ratio": 0.2, "allow_large_ratio": True},
              "kl_cov": {"kl_ratio": 0.2, "allow_large_ratio": True}}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_poisoned_gradient_is_never_applied(model_dir, tmp_path, objective):
    """A hook turns one parameter's gradient into NaN at step 1 while the loss stays finite: the run stops
    before the optimizer step with the same message for every objective, and the weights in memory and in
    the last checkpoint are the finite ones of before the step."""
    oc = ObjectiveConfig(name=objective, params=OBJECTIVES[objective])
    tr = Trainer(make_config(model_dir, steps=3, checkpoint_every=1, objective=oc), tmp_path / "run",
                 progress=False)
    first = next(tr.model.parameters())
    first.register_hook(lambda g: g * float("nan") if tr.step == 1 else g)
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient \(global norm\) at step 1 "
                       r"\(objective .*\).*last good checkpoint .*checkpoint.pt is kept.*--lr"):
        tr.train()
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 1
    for k, v in tr.model.state_dict().items():
        assert torch.isfinite(v).all() and torch.equal(v, ck["model"][k]), k
    assert not (tmp_path / "run" / "model").exists()


def test_non_finite_weights_are_never_saved(model_dir, tmp_path, monkeypatch):
    # one mini-batch: no later forward of the step sees the poisoned weights
    one_step = OptimConfig(micro_batch_size=8, num_minibatches=1, lr=3e-3)
    tr = Trainer(make_config(model_dir, steps=2, checkpoint_every=1, optim=one_step), tmp_path / "run",
                 progress=False)
    real_step = tr.optimizer.step

    def poisoning_step(*a, **k):
        out = real_step(*a, **k)
        with torch.no_grad():
            next(tr.model.parameters()).fill_(float("inf"))
        return out

    monkeypatch.setattr(tr.optimizer, "step", poisoning_step)
    with pytest.raises(NonFiniteLossError,
                       match="weights are non-finite after step 0; the checkpoint was not"):
        tr.train()
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "model").exists()


def test_a_run_without_any_update_fails(model_dir, tmp_path):
    cfg = make_config(model_dir, steps=2)
    cfg.data.task = "never_right"
    with pytest.raises(NoUpdatesError, match="no optimizer update in 2 rollout step"):
        Trainer(cfg, tmp_path / "run", progress=False).train()


def test_run_folder_is_owned_by_one_run(model_dir, tmp_path):
    out = tmp_path / "run"
    Trainer(make_config(model_dir, steps=2, checkpoint_every=1, diagnose_every=1), out,
            progress=False).train()
    metrics = (out / "metrics.jsonl").read_text()
    # a new run in a folder holding a run: refused, nothing touched
    with pytest.raises(RunDirError, match="already holds a training run: pass --resume .* or --overwrite"):
        Trainer(make_config(model_dir, steps=3, seed=7), out, progress=False)
    assert (out / "metrics.jsonl").read_text() == metrics
    # --resume with a changed setting names it; --extend lets steps grow, and only steps
    with pytest.raises(RunDirError, match=r"optim\.lr: 0\.003 -> 0\.001"):
        cfg = make_config(model_dir, steps=2, checkpoint_every=1, diagnose_every=1)
        cfg.optim.lr = 1e-3
        Trainer(cfg, out, resume=True, progress=False)
    with pytest.raises(RunDirError, match="steps: 2 -> 3.*add --extend"):
        Trainer(make_config(model_dir, steps=3, checkpoint_every=1, diagnose_every=1), out, resume=True,
                progress=False)
    longer = Trainer(make_config(model_dir, steps=3, checkpoint_every=1, diagnose_every=1), out, resume=True,
                     extend=True, progress=False)
    assert longer.step == 2
    longer.train()
    assert json.loads((out / "config.json").read_text())["config"]["steps"] == 3
    # --overwrite clears the old run entirely (its diagnostics included) before the new one starts
    assert any((out / "diagnostics").iterdir())
    Trainer(make_config(model_dir, steps=1), out, overwrite=True, progress=False).train()
    assert not (out / "diagnostics").exists()
    assert [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1]


def test_resume_before_the_first_checkpoint_and_a_torn_metrics_line(model_dir, tmp_path):
    out = tmp_path / "run"
    cfg = make_config(model_dir, steps=2, checkpoint_every=100)
    tr = Trainer(cfg, out, progress=False)
    tr.cfg.steps = 1  # "killed" after one step, before any checkpoint (the final one is at step == steps)
    tr.close()
    (out / "checkpoint.pt").unlink(missing_ok=True)
    with pytest.raises(RunDirError, match="stopped before its first checkpoint.*--overwrite"):
        Trainer(make_config(model_dir, steps=2, checkpoint_every=100), out, resume=True, progress=False)
    # a checkpointed run killed mid-line: the torn line is dropped with a warning, the run continues
    Trainer(make_config(model_dir, steps=2, checkpoint_every=1), out, overwrite=True, progress=False).train()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "entropy/tr')
    with pytest.warns(UserWarning, match=r"metrics.jsonl:\d+: ignoring the truncated final line"):
        tr = Trainer(make_config(model_dir, steps=3, checkpoint_every=1), out, resume=True, extend=True,
                     progress=False)
    tr.train()
    assert [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3]


def test_cli_exit_codes_and_messages(model_dir, tmp_path, capsys):
    base = ["train", "--model", str(model_dir), "--task", "even_length", "--n-train", "64", "--n-val", "4",
            "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "6", "--steps", "1",
            "--val-every", "100", "--micro-batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--lr", "0.5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("entropy-mech train: error:") and "optim.lr" in err
    assert main(["train", "--out", str(tmp_path / "run"), "--extend", "--steps", "2", "--no-progress"]) == 2
    assert "use it with --resume" in capsys.readouterr().err
    never = [a if a != "even_length" else "never_right" for a in base]
    never[never.index(str(tmp_path / "run"))] = str(tmp_path / "never")
    assert main(never) == 1
    assert "no optimizer update" in capsys.readouterr().err
