"""TRL integration (integrations/trl.py): the subclass's loss and gradients against TRL's own
``GRPOTrainer`` (ppo_clip) and against ``theory.objectives`` on the concatenated optimizer-step batch
(Clip-Cov / KL-Cov), 1-vs-2-process (gloo) selection equality, config checks, and a short training run
that logs the cov and probe metrics. Tiny Qwen2 built in code; nothing is downloaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

pytest.importorskip("trl")  # a test dependency (pyproject [test]); present in CI

from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from integrations.trl import (METRIC_STEP_SELECTED, METRIC_STEP_TOKENS, EntropyMechGRPOConfig,  # noqa: E402
                              EntropyMechGRPOTrainer)
from integrations.trl_window import WindowBatch, micro_batch_stats, select_window, selection_generator  # noqa
from llm_rl.model import build_default_policy, save_policy  # noqa: E402
from theory.aggregation import aggregate  # noqa: E402
from theory.objectives import compute_cov_stats, get_objective  # noqa: E402

transformers.utils.logging.disable_progress_bar()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import trl_two_process_selection as two  # noqa: E402

COMPLETION = 6


def reward_even_length(completions, **kwargs):
    """Reward 1 iff the completion has an even number of characters (test-only)."""
    return [float(len(c) % 2 == 0) for c in completions]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model, tok = build_default_policy(seed=0, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64, max_positions=64)
    return str(save_policy(model, tok, tmp_path_factory.mktemp("trl") / "model"))


def dataset(n=16):
    return Dataset.from_dict({"prompt": [f"{i}+{i}=" for i in range(n)]})


def common_args(tmp_path, **over):
    kw = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
              gradient_accumulation_steps=2, max_completion_length=COMPLETION, report_to=[], use_cpu=True,
              bf16=False, save_strategy="no", logging_steps=1, seed=0, use_vllm=False)
    kw.update(over)
    return kw


def make_trainer(model_dir, tmp_path, cls=EntropyMechGRPOTrainer, cfg_cls=EntropyMechGRPOConfig, **over):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    args = cfg_cls(**common_args(tmp_path, **over))
    tr = cls(model=model_dir, reward_funcs=reward_even_length, args=args, train_dataset=dataset(),
             processing_class=tok)
    tr.model.train()
    return tr


def micro_batch(seed: int, rows=4, prompt=3, width=COMPLETION, vocab=60, off_policy=True, model=None):
    """A hand-made TRL micro-batch (prompt left-padded, completion right-padded); old log-probs are the
    model's current ones plus noise, so PPO clipping and the KL-Cov penalty are active."""
    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(5, vocab, (rows, prompt), generator=g)
    prompt_mask = torch.ones(rows, prompt, dtype=torch.long)
    prompt_mask[0, 0] = 0
    completion_ids = torch.randint(5, vocab, (rows, width), generator=g)
    completion_mask = torch.ones(rows, width, dtype=torch.long)
    completion_mask[1, width - 2:] = 0
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
              "completion_mask": completion_mask, "advantages": torch.randn(rows, generator=g)}
    if off_policy:
        with torch.no_grad():
            ids = torch.cat([prompt_ids, completion_ids], 1)
            att = torch.cat([prompt_mask, completion_mask], 1)
            logits = model(input_ids=ids, attention_mask=att).logits[:, prompt - 1:-1].float()
            lp = torch.log_softmax(logits, -1).gather(-1, completion_ids[..., None])[..., 0]
        inputs["old_per_token_logps"] = lp + 0.3 * torch.randn(rows, width, generator=g)
    return inputs


def loss_and_grads(tr, inputs_list, num_items, *, as_trl=True):
    """Sum of the trainer's micro-batch losses over one optimizer step, and the accumulated gradients.
    ``as_trl``: compute_loss gets TRL's buffered batch object itself (as in a real run, where the window
    reuses the first micro-batch's log-probs); else a copy (the window recomputes them)."""
    tr.model.zero_grad(set_to_none=True)
    tr.current_gradient_accumulation_steps = len(inputs_list)
    buffered = [{**inputs, "num_items_in_batch": num_items} for inputs in inputs_list]
    tr._buffered_inputs, tr._step = buffered, 0
    total = 0.0
    for p, inputs in enumerate(buffered):
        tr.accelerator.gradient_state._set_sync_gradients(p == len(inputs_list) - 1)
        loss = tr.compute_loss(tr.model, inputs if as_trl else dict(inputs))
        loss.backward()
        total += float(loss.detach())
        tr._step += 1
    grads = torch.cat([p.grad.flatten() for p in tr.model.parameters() if p.grad is not None])
    return total, grads


# -- (1) ppo_clip equals TRL's own GRPOTrainer ------------------------------------------------------


@pytest.mark.parametrize("loss_type,extra", [("dapo", {}), ("grpo", {}), ("bnpo", {}), ("dr_grpo", {}),
                                             ("dapo", {"beta": 0.05}),
                                             ("grpo", {"top_entropy_quantile": 0.5})])
def test_ppo_clip_equals_trl(model_dir, tmp_path, loss_type, extra):
    kw = dict(loss_type=loss_type, epsilon=0.1, epsilon_high=0.15, **extra)
    ours = make_trainer(model_dir, tmp_path, objective="ppo_clip", **kw)
    theirs = make_trainer(model_dir, tmp_path, cls=GRPOTrainer, cfg_cls=GRPOConfig, **kw)
    mbs = [micro_batch(s, model=ours.model) for s in (1, 2)]
    if "beta" in extra:
        for mb in mbs:
            mb["ref_per_token_logps"] = mb["old_per_token_logps"] - 0.2
    n = sum(mb["completion_mask"].sum() for mb in mbs)
    l_ours, g_ours = loss_and_grads(ours, mbs, n)
    l_theirs, g_theirs = loss_and_grads(theirs, mbs, n)
    dl, dg = abs(l_ours - l_theirs), float((g_ours - g_theirs).abs().max())
    print(f"ppo_clip vs TRL {loss_type} {extra}: max|Δloss|={dl:.2e} max|Δgrad|={dg:.2e}")
    assert dl < 1e-6 and dg < 1e-6
    assert float(g_theirs.abs().max()) > 1e-4  # a real gradient was compared
    clip = ours._metrics["train"]["objective/clip_frac"]
    assert clip and max(clip) > 0  # the off-policy batch exercises the clip


def test_ppo_clip_differs_from_trl_with_other_clip(model_dir, tmp_path):
    """The comparison above can fail: a different eps_high gives a different gradient."""
    ours = make_trainer(model_dir, tmp_path, objective="ppo_clip", objective_params={"eps_high": 0.5},
                        epsilon=0.1, epsilon_high=0.15)
    theirs = make_trainer(model_dir, tmp_path, cls=GRPOTrainer, cfg_cls=GRPOConfig, epsilon=0.1,
                          epsilon_high=0.15)
    mbs = [micro_batch(s, model=ours.model) for s in (1, 2)]
    n = sum(mb["completion_mask"].sum() for mb in mbs)
    assert float((loss_and_grads(ours, mbs, n)[1] - loss_and_grads(theirs, mbs, n)[1]).abs().max()) > 1e-5


# -- (2) Clip-Cov / KL-Cov equal theory.objectives on the concatenated optimizer-step batch --------


# ~46 tokens per step: the step's quota is 1 token, per micro-batch it would be 1 + 1 (verl's scope)
COV_PARAMS = {"kl_cov": {"kl_ratio": 0.02, "kl_coef": 1.0},
              "clip_cov": {"clip_ratio": 0.02, "cov_lb": -10.0, "cov_ub": 10.0}}


def reference(tr, mbs, objective, params):
    """theory.objectives on the concatenated batch: loss (dapo = token-mean) and gradients."""
    cat = {k: torch.cat([mb[k] for mb in mbs]) for k in mbs[0]}
    tr.model.zero_grad(set_to_none=True)
    lp = tr._logps(tr.model, cat, grad=True)[0]
    adv = cat["advantages"][:, None].expand_as(lp)
    mask = cat["completion_mask"].bool()
    gen = selection_generator(tr.args.selection_seed, 0, "cpu")
    mat, _ = get_objective(objective)(lp, cat["old_per_token_logps"], adv, mask, **params, generator=gen)
    loss = aggregate(mat, mask, "token-mean")
    loss.backward()
    sel = compute_cov_stats(lp.detach(), cat["old_per_token_logps"], adv, mask, objective=objective,
                            generator=selection_generator(tr.args.selection_seed, 0, "cpu"), **params)
    grads = torch.cat([p.grad.flatten() for p in tr.model.parameters() if p.grad is not None])
    return float(loss.detach()), grads, sel.selected


@pytest.mark.parametrize("as_trl", [True, False])
@pytest.mark.parametrize("objective", ["kl_cov", "clip_cov"])
def test_cov_objectives_select_over_the_optimizer_step(model_dir, tmp_path, objective, as_trl):
    params = COV_PARAMS[objective]
    tr = make_trainer(model_dir, tmp_path, objective=objective, objective_params=params, selection_seed=7)
    mbs = [micro_batch(s, model=tr.model) for s in (1, 2)]
    n = sum(mb["completion_mask"].sum() for mb in mbs)
    tr._window = None
    no_grad_forwards = []
    logps = tr._logps
    tr._logps = lambda model, inputs, grad: (no_grad_forwards.append(1) if not grad else None) or \
        logps(model, inputs, grad)
    l_ours, g_ours = loss_and_grads(tr, mbs, n, as_trl=as_trl)
    del tr._logps
    assert len(no_grad_forwards) == (1 if as_trl else 2)   # W − 1 extra forwards when the batch is TRL's
    assert tr._window is None  # reset after the step's last micro-batch
    steps = tr._metrics["train"][METRIC_STEP_SELECTED]
    l_ref, g_ref, sel_ref = reference(tr, mbs, objective, tr.objective_params)
    dl, dg = abs(l_ours - l_ref), float((g_ours - g_ref).abs().max())
    print(f"{objective} vs theory on the concatenated step: max|Δloss|={dl:.2e} max|Δgrad|={dg:.2e}")
    assert dl < 1e-6 and dg < 1e-6
    assert steps == [float(sel_ref.sum())] == [1.0]  # one quota for the whole step
    assert tr._metrics["train"][METRIC_STEP_TOKENS] == [float(n)]
    # the check can fail: per-micro-batch selection (verl's scope) gives another gradient
    tr.model.zero_grad(set_to_none=True)
    for mb in mbs:
        lp = tr._logps(tr.model, mb, grad=True)[0]
        adv = mb["advantages"][:, None].expand_as(lp)
        m = mb["completion_mask"].bool()
        mat, _ = get_objective(objective)(lp, mb["old_per_token_logps"], adv, m, **tr.objective_params,
                                          generator=selection_generator(7, 0, "cpu"))
        aggregate(mat, m, "token-mean", global_token_count=n.float()).backward()
    g_local = torch.cat([p.grad.flatten() for p in tr.model.parameters() if p.grad is not None])
    assert float((g_local - g_ref).abs().max()) > 1e-6


# -- (3) 2 processes select what 1 process selects -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_process_blocks(objective):
    lp, old, adv, mask = two.window_data()
    batch = WindowBatch(lp, old, adv, mask, two.ROWS_PER_MICRO_BATCH)
    sel = select_window(batch, objective=objective, params=two.PARAMS[objective],
                        generator=selection_generator(two.SEED, two.STEP, "cpu"))
    return sel.stats.selected, int(sel.stats.num_tokens)


@pytest.mark.parametrize("objective", ["kl_cov", "clip_cov"])
def test_two_processes_select_what_one_process_selects(tmp_path, objective):
    port = _free_port()
    procs = []
    for r in range(two.WORLD):
        env = {**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(two.WORLD),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT)}
        script = str(Path(__file__).parent / "trl_two_process_selection.py")
        procs.append(subprocess.Popen([sys.executable, script, objective, str(tmp_path)], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out[-3000:]
    full, n = one_process_blocks(objective)
    per = full.shape[0] // two.WORLD
    total = 0
    for r in range(two.WORLD):
        got = torch.load(tmp_path / f"rank{r}.pt")
        assert got["num_tokens"] == n
        for p, block in enumerate(got["blocks"]):
            a = r * per + p * two.ROWS_PER_MICRO_BATCH
            want = full[a:a + two.ROWS_PER_MICRO_BATCH, :two.WIDTHS[r]]
            assert torch.equal(block, want), (r, p)
            total += int(block.sum())
    assert total == int(full.sum()) >= 2
    print(f"{objective}: 2 gloo processes select the same {total} tokens as 1 process")


def test_micro_batch_blocks_differ_for_another_rank_offset():
    """The equality above can fail: the block of the wrong rank's rows is another selection."""
    full, _ = one_process_blocks("kl_cov")
    lp, old, adv, mask = two.window_data()
    sel = select_window(WindowBatch(lp, old, adv, mask, two.ROWS_PER_MICRO_BATCH), objective="kl_cov",
                        params=two.PARAMS["kl_cov"], generator=selection_generator(0, 0, "cpu"))
    blocks = [micro_batch_stats(sel, p).selected for p in range(4)]
    assert torch.equal(torch.cat(blocks), full)
    assert not all(torch.equal(blocks[p], blocks[p + 1]) for p in range(3))


# -- config checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("over,match", [
    ({"objective": "kl_cov", "objective_params": {"kl_ratio": 0.2}}, "fraction"),
    ({"objective": "nope"}, "unknown objective"),
    ({"objective": "kl_cov", "objective_params": {"eps_low": 0.2}}, "takes no hyperparameter"),
    ({"loss_type": "cispo"}, "cannot combine"),
    ({"loss_type": "sapo"}, "cannot combine"),
    ({"importance_sampling_level": "sequence", "loss_type": "grpo"}, "sequence"),
    ({"delta": 2.0}, "delta"),
    ({"probe_every": -1}, "probe_every"),
])
def test_config_rejects(tmp_path, over, match):
    with pytest.raises(ValueError, match=match):
        EntropyMechGRPOConfig(**common_args(tmp_path, **over))


def test_on_policy_kl_cov_warns_that_its_penalty_cannot_act(tmp_path):
    """TRL keeps no old log-probs when every step is on-policy (ρ ≡ 1), where KL-Cov is vanilla PG."""
    with pytest.warns(UserWarning, match="on-policy.*num_iterations > 1"):
        EntropyMechGRPOConfig(**common_args(tmp_path, objective="kl_cov"))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        EntropyMechGRPOConfig(**common_args(tmp_path, objective="kl_cov", num_iterations=2))
        EntropyMechGRPOConfig(**common_args(tmp_path, objective="kl_cov", steps_per_generation=4))
        EntropyMechGRPOConfig(**common_args(tmp_path, objective="clip_cov"))


def test_config_takes_trl_clip_and_objective_overrides(tmp_path):
    from integrations.trl import resolve_objective_params
    assert resolve_objective_params("ppo_clip", {}, epsilon=0.1, epsilon_high=None) == \
        {"eps_low": 0.1, "eps_high": 0.1}
    assert resolve_objective_params("clip_higher", {}, epsilon=0.2, epsilon_high=None)["eps_high"] == 0.28
    got = resolve_objective_params("clip_cov", {"eps_high": 1.0}, epsilon=0.2, epsilon_high=0.3)
    assert got["eps_high"] == 1.0 and got["eps_low"] == 0.2


def test_trainer_rejects_plain_config_and_split_generation(model_dir, tmp_path):
    with pytest.raises(ValueError, match="EntropyMechGRPOConfig"):
        make_trainer(model_dir, tmp_path, cfg_cls=GRPOConfig)
    with pytest.raises(ValueError, match="multiple of gradient_accumulation_steps"):
        make_trainer(model_dir, tmp_path, objective="kl_cov", steps_per_generation=1)


# -- (4) a short training run logs the cov and probe metrics -----------------------------------------


def test_short_run_logs_cov_and_probe_metrics(model_dir, tmp_path):
    tr = make_trainer(model_dir, tmp_path, objective="clip_cov", objective_params=COV_PARAMS["clip_cov"],
                      max_steps=2, probe_every=1, num_iterations=2, beta=0.01)
    tr.train()
    logs = [r for r in tr.state.log_history if "loss" in r]
    assert len(logs) == 2
    for r in logs:
        for key in (METRIC_STEP_SELECTED, METRIC_STEP_TOKENS, "objective/cov_mean", "objective/selected_frac",
                    "kl", "entropy", "diag/dH_obs_sum", "diag/dH_first_sum", "diag/r2_first",
                    "diag/cov_within", "diag/cov_between"):
            assert key in r, key
        assert r[METRIC_STEP_SELECTED] >= 1
    # num_iterations=2: the second step is off-policy (old log-probs from before the first update)
    assert logs[1]["objective/ppo_kl"] != 0.0
