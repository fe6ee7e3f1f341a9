"""The gpu profile of ``entropy-mech reproduce`` (issue 16) and everything that differs on CUDA.

CPU-testable parts: the plan (model size, token fractions, flags), the benchmark-step runner and the
targets it grades, bf16 autocast emulated on CPU (``torch.autocast("cpu", dtype=torch.bfloat16)``) through
the warm start, the trainer and its scoring / entropy / diagnostics helpers (reductions in float32 outside
the autocast, fp32 master weights), and the device of the trainer's generators. ``gpu``-marked tests
repeat the device-specific ones on CUDA (skipped without one). The ``slow`` test runs
``entropy-mech reproduce --profile gpu --tiny`` end to end (``make test`` runs it once).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from llm_rl.model import build_default_policy, save_policy
from reproduce.experiments import MODEL_PLACEHOLDER, Spec
from reproduce.gpu_steps import BenchStep, grade, run_bench_steps, summarise
from reproduce.plans import GPU_MODEL, MIN_SELECTED, PAPER_FRACTIONS, bench_steps, plan, token_fraction

BF16_CPU = dict(device_type="cpu", dtype=torch.bfloat16)


# ------------------------------------------------------------------------------------------------ plan


def _opt(spec, flag):
    """Values of a repeatable option of a spec."""
    return [spec.args[i + 1] for i, a in enumerate(spec.args) if a == flag]


@pytest.mark.parametrize("tiny", [False, True])
def test_gpu_plan_shape(tiny):
    specs = plan("gpu", tiny)
    pre = [s for s in specs if s.kind == "pretrain"]
    runs = [s for s in specs if s.kind == "train"]
    assert len(pre) == 1 and {s.tags["objective"] for s in runs} == {"grpo", "kl_cov", "clip_cov"}
    assert all(s.needs == pre[0].name and "--diagnose-every" in s.args for s in runs)
    if not tiny:  # >= 100 M non-embedding parameters, computed from the sizes the spec passes
        assert pre[0].tags["non_embedding_params"] >= 100_000_000
        assert [f"{k}={v}" for k, v in GPU_MODEL.items()] == _opt(pre[0], "--model-size")
    # the tiny path runs the same flags, only the values differ
    full, small = plan("gpu"), plan("gpu", tiny=True)
    assert [[a for a in s.args if a.startswith("--")] for s in full] == \
        [[a for a in s.args if a.startswith("--")] for s in small]
    steps = bench_steps("gpu", tiny)
    assert [s.name for s in steps] == ["diagnostics_cost", "trainer_throughput"]
    assert steps[1].needs == pre[0].name
    assert ("cuda" in steps[0].args) != tiny and bench_steps("quick") == []


@pytest.mark.parametrize("tiny", [False, True])
def test_gpu_plan_token_fractions_select_at_least_8(tiny):
    for s in plan("gpu", tiny):
        obj = s.tags.get("objective")
        if obj not in PAPER_FRACTIONS:
            continue
        key, paper = PAPER_FRACTIONS[obj]
        r, n = s.tags["token_fraction"], s.tags["minibatch_tokens_est"]
        assert f"{key}={r!r}" in _opt(s, "--objective-param")
        assert int(r * n) >= MIN_SELECTED and s.tags["selected_tokens_est"] == int(r * n)
        assert r == paper or int(paper * n) < MIN_SELECTED  # paper's fraction whenever it reaches 8 tokens
        assert ("allow_large_ratio=true" in _opt(s, "--objective-param")) == (r > 0.05)


def test_token_fraction_rule():
    assert token_fraction(2e-3, 100_000) == 2e-3  # 200 tokens: the paper's fraction
    assert token_fraction(2e-4, 40_000) == 2e-4  # exactly 8
    for n in (171.0, 170.9, 42.7, 1000.0, 3.0 * 7, 8.0):
        r = token_fraction(2e-4, n)
        unit = 10.0 ** (math.floor(math.log10(r)) - 2)  # smallest at 3 significant digits
        assert int(r * n) >= 8 and int((r - unit) * n) < 8, (n, r)
    assert token_fraction(2e-4, 170.9) == 0.0469
    with pytest.raises(ValueError):
        token_fraction(2e-4, 5)  # fewer tokens than the 8 to select
    with pytest.raises(ValueError):
        token_fraction(2.0, 100)


def test_tiny_only_with_gpu_profile():
    with pytest.raises(ValueError, match="tiny"):
        plan("quick", tiny=True)
    from cli.main import main

    assert main(["reproduce", "--profile", "quick", "--tiny", "--out", "unused"]) == 2


# ------------------------------------------------------------------------------------- bench steps


def test_grade_and_a_failing_benchmark():
    assert grade(1.2, 1.5, "max") is True and grade(1.7, 1.5, "max") is False
    assert grade(1.1, 1.0, "min") is True and grade(0.9, 1.0, "min") is False
    assert grade(None, 1.0, "min") is None
    with pytest.raises(ValueError):
        grade(1.0, 1.0, "less")
    with pytest.raises(ValueError):
        grade(float("nan"), 1.0, "max")
    slow = {"diagnostics_cost": {"ok": True, "result": {"cost_ratio": 3.0, "peak_extra_chunks": 1.0}}}
    checks = summarise(slow, [])["benchmarks"]["diagnostics_cost"]["checks"]
    assert [c["meets"] for c in checks] == [False, True]


def test_bench_step_validation():
    with pytest.raises(ValueError):
        BenchStep("a b", "x.py", ())
    with pytest.raises(ValueError):
        BenchStep("a", "x.py", ("--json-out", "f"))
    with pytest.raises(ValueError):
        BenchStep("a", "x.py", (MODEL_PLACEHOLDER,))  # placeholder without needs


FAKE_BENCH = """import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--json-out") + 1])
n = Path(out.parent / "calls"); n.write_text(str(int(n.read_text()) + 1 if n.exists() else 1))
if "--fail" in args:
    sys.exit(3)
out.write_text(json.dumps({"cost_ratio": 1.2, "peak_extra_chunks": 0.5, "model": args[0]}))
"""


def test_run_bench_steps_resumes_and_reports_failures(tmp_path):
    script = tmp_path / "fake_bench.py"
    script.write_text(FAKE_BENCH)
    model = tmp_path / "model"
    specs = [Spec("pretrain-x", "pretrain", ("--steps", "1"), tags={"profile": "gpu"})]
    # the warm start's DONE.json supplies {model}
    from reproduce.experiments import check_plan, run_dir
    from rundir.finished import mark_finished

    d = run_dir(specs[0], tmp_path / "out", check_plan(specs))
    d.mkdir(parents=True)
    mark_finished(d, {"hash": "h", "model": str(model)})
    steps = [BenchStep("diagnostics_cost", str(script), (MODEL_PLACEHOLDER,), needs="pretrain-x"),
             BenchStep("broken", str(script), ("--fail",))]
    s1 = run_bench_steps(steps, tmp_path / "out", specs, progress=False)
    cost = s1["benchmarks"]["diagnostics_cost"]
    assert cost["ok"] and cost["result"]["model"] == str(model) and all(c["meets"] for c in cost["checks"])
    assert not s1["benchmarks"]["broken"]["ok"] and "exit 3" in s1["benchmarks"]["broken"]["error"]
    assert json.loads((tmp_path / "out" / "gpu_summary.json").read_text())["plan"] == {"pretrain-x":
                                                                                        {"profile": "gpu"}}
    run_bench_steps(steps, tmp_path / "out", specs, progress=False)  # resumes: the finished step is skipped
    assert (tmp_path / "out" / "bench" / "diagnostics_cost" / "calls").read_text() == "1"
    assert (tmp_path / "out" / "bench" / "broken" / "calls").read_text() == "2"


# ------------------------------------------------------------------ bf16 autocast emulated on CPU


def test_training_autocast_choice():
    from llm_rl.pretrain import training_autocast

    ctx = training_autocast(torch.device("cpu"), bf16=True)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    assert not isinstance(training_autocast(torch.device("cpu")), torch.autocast)  # CPU default: fp32
    with pytest.raises(ValueError):
        training_autocast("cuda")


def _tiny_pretrain(tmp_path, device="cpu", bf16=None):
    from llm_rl.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(task="arithmetic", steps=3, batch_size=4, n_train=32, n_val=4, warmup_steps=1,
                         model_sizes=dict(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                          intermediate_size=32))
    out = tmp_path / "warm"
    metrics = pretrain(cfg, out, progress=False, device=device, bf16=bf16)
    return out, metrics


def test_pretrain_bf16_autocast_keeps_fp32_master_weights(tmp_path):
    out, metrics = _tiny_pretrain(tmp_path, bf16=True)
    info = json.loads((out / "pretrain.json").read_text())
    assert info["bf16_autocast"] is True and info["device"] == "cpu" and math.isfinite(metrics["final_loss"])
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")  # the saved master weights, as trained
    assert {w.dtype for w in weights.values()} == {torch.float32}


def _rollout(model, tok, rows=4):
    from llm_rl.rollout import Rollout, encode_prompts

    ids, mask = encode_prompts(tok, ["1+2=", "3+4=", "5-1=", "7+7="][:rows])
    resp = torch.randint(4, 20, (rows, 5), generator=torch.Generator().manual_seed(0))
    return Rollout(torch.cat([ids, resp], 1), torch.cat([mask, torch.ones_like(resp)], 1),
                   torch.ones_like(resp, dtype=torch.bool), ids.shape[1], [""] * rows)


def test_reductions_run_in_fp32_outside_bf16_autocast():
    """Under the (CPU-emulated) bf16 autocast the model's logits are bf16, but the log-probabilities,
    entropies and diagnostics logits the trainer reduces come back float32 and close to the fp32 ones."""
    from llm_rl.diagnostics import state_logits
    from llm_rl.forward import response_logits
    from llm_rl.rollout import score
    from llm_rl.update import token_entropy

    model, tok = build_default_policy(0, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64)
    ro = _rollout(model, tok)
    rows = torch.arange(4)
    with torch.autocast(**BF16_CPU):
        assert response_logits(model, ro.input_ids, ro.attention_mask, ro.prompt_len).dtype == torch.bfloat16
        lp_bf16 = score(model, ro.input_ids, ro.attention_mask, ro.prompt_len)
    lp = score(model, ro.input_ids, ro.attention_mask, ro.prompt_len)
    assert lp_bf16.dtype == torch.float32 and torch.allclose(lp_bf16, lp, atol=0.1)
    ent = token_entropy(model, ro, rows, torch.autocast(**BF16_CPU))
    ent32 = token_entropy(model, ro, rows, torch.autocast("cpu", enabled=False))
    assert ent.dtype == torch.float32 and torch.allclose(ent, ent32, atol=0.1)
    z = state_logits(model, ro.input_ids, ro.attention_mask, ro.prompt_len, torch.tensor([0, 1]),
                     torch.tensor([0, 2]), autocast=torch.autocast(**BF16_CPU))
    assert z.dtype == torch.float32 and z.device.type == "cpu"


def _trainer(tmp_path, monkeypatch, objective="kl_cov", device="cpu"):
    from llm_rl.config import DataConfig, ObjectiveConfig, OptimConfig, RolloutConfig, TrainConfig
    from llm_rl.trainer import Trainer

    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(tmp_path / "cache"))
    model, tok = build_default_policy(0, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64, max_positions=64)
    path = save_policy(model, tok, tmp_path / "model")
    params = {"kl_ratio": 0.2, "allow_large_ratio": True} if objective == "kl_cov" else {}
    cfg = TrainConfig(model=str(path), device=device, steps=2, val_every=100, checkpoint_every=100,
                      diagnose_every=1, data=DataConfig(task="arithmetic", n_train=64, n_val=4),
                      rollout=RolloutConfig(prompts_per_step=4, group_size=4, dynamic_sampling=False),
                      objective=ObjectiveConfig(name=objective, params=params, entropy_coef=1e-3),
                      optim=OptimConfig(micro_batch_size=8, num_minibatches=2, lr=3e-3))
    return Trainer(cfg, tmp_path / "run", progress=False)


def test_trainer_under_emulated_bf16_autocast(tmp_path, monkeypatch):
    """The whole update step (π_old scoring, KL-Cov selection, entropy bonus, diagnostics) under the CPU
    bf16 autocast the trainer uses on CUDA: finite metrics, float32 parameters and optimizer state, and
    the selection generator on the trainer's device."""
    t = _trainer(tmp_path, monkeypatch)
    assert t.gens["selection"].device == t.device and t.gens["shuffle"].device.type == "cpu"
    t.autocast = t.update.autocast = torch.autocast(**BF16_CPU)
    recs = t.train()
    upd = [r for r in recs if "loss/policy" in r]
    assert upd and all(math.isfinite(r["loss/policy"]) for r in upd)
    assert {p.dtype for p in t.model.parameters()} == {torch.float32}
    assert {v.dtype for s in t.optimizer.state.values() for v in s.values() if v.dim()} == {torch.float32}
    assert list((tmp_path / "run" / "diagnostics").glob("step_*.npz"))
    assert all(math.isfinite(r["diag/states"]) for r in recs if "diag/states" in r)


# ------------------------------------------------------------------------------------------- on CUDA


@pytest.mark.gpu
def test_cuda_pretrain_uses_bf16_autocast(tmp_path):
    out, metrics = _tiny_pretrain(tmp_path, device="cuda")
    info = json.loads((out / "pretrain.json").read_text())
    assert info["bf16_autocast"] is True and info["device"].startswith("cuda")
    assert math.isfinite(metrics["final_loss"])


@pytest.mark.gpu
def test_cuda_trainer_generators_and_autocast(tmp_path, monkeypatch):
    t = _trainer(tmp_path, monkeypatch, device="cuda")
    assert t.gens["selection"].device.type == "cuda" and t.gens["shuffle"].device.type == "cpu"
    assert isinstance(t.autocast, torch.autocast) and t.autocast.fast_dtype == torch.bfloat16
    recs = t.train()
    assert all(math.isfinite(r["loss/policy"]) for r in recs if "loss/policy" in r)
    assert {p.dtype for p in t.model.parameters()} == {torch.float32}


@pytest.mark.gpu
def test_cuda_diagnostics_cost_runs(tmp_path):
    import subprocess

    out = tmp_path / "d.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "diagnostics_cost.py"
    subprocess.run([sys.executable, str(script), "--rows", "256", "--vocab", "8192",
                    "--device", "cuda", "--eager-only", "--json-out", str(out)], check=True)
    assert json.loads(out.read_text())["device_name"] != "cpu"


# ------------------------------------------------------------------------------- the whole tiny path


@pytest.mark.slow
def test_reproduce_gpu_tiny_end_to_end(tmp_path, monkeypatch):
    """``entropy-mech reproduce --profile gpu --tiny``: the warm start, three RL runs with diagnostics, both
    benchmark steps and the report, at toy size on CPU (~2-3 min on 2 cores)."""
    from cli.main import main

    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "gpu-tiny"
    assert main(["reproduce", "--profile", "gpu", "--tiny", "--out", str(out), "--no-progress",
                 "--verify-instances", "20"]) == 0
    assert (out / "report.md").is_file()
    summary = json.loads((out / "gpu_summary.json").read_text())
    bench = summary["benchmarks"]
    assert bench["diagnostics_cost"]["ok"] and bench["trainer_throughput"]["ok"]
    assert bench["diagnostics_cost"]["result"]["device"] == "cpu"
    assert all(isinstance(c["meets"], bool) for c in bench["diagnostics_cost"]["checks"])
    assert bench["trainer_throughput"]["result"]["rows"]  # TRL's row too when trl is installed
    plan_tags = summary["plan"]
    assert plan_tags["llm-kl_cov-tiny-s0"]["selected_tokens_est"] >= MIN_SELECTED
    assert all(v is not None for v in summary["run_wall_s"].values())
    runs = {p.name.rsplit("-", 1)[0]: p for p in (out / "runs").iterdir()}
    assert set(runs) == {"pretrain-tiny", "llm-grpo-tiny-s0", "llm-kl_cov-tiny-s0", "llm-clip_cov-tiny-s0"}
    for name in ("llm-grpo-tiny-s0", "llm-kl_cov-tiny-s0", "llm-clip_cov-tiny-s0"):
        assert (runs[name] / "metrics.jsonl").is_file()
