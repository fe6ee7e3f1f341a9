"""integrations.verl against verl itself (installed by `make install`, CPU, no GPU): KL-Cov equals verl's
``kl_cov`` in loss and gradient, Clip-Cov equals verl's ``clip_cov`` when its random choice is forced (every
candidate selected), the hyperparameter checks, the distributed top-k, and 2 gloo processes selecting what
1 process selects on the concatenated batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos",
                                 reason="verl is installed by `make install` (pip install --no-deps verl)")
from omegaconf import OmegaConf  # noqa: E402  (a verl dependency)

import integrations.verl as ev  # noqa: E402
from theory.cov_selection import top_k_mask  # noqa: E402

AGG = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm", "token-sum"]


def _config(**policy_loss):
    pl = dict(loss_mode="vanilla", clip_cov_ratio=0.0002, clip_cov_lb=1.0, clip_cov_ub=5.0,
              kl_cov_ratio=0.0002, ppo_kl_coef=0.1)
    pl.update(policy_loss)
    return OmegaConf.create(dict(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.2, policy_loss=pl,
                                 global_batch_info={}))


def _batch(seed=0, B=6, T=24, dtype=torch.float64, adv_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    old = -torch.rand(B, T, generator=g, dtype=dtype) * 3
    lp = old + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)
    adv = (adv_scale * torch.randn(B, 1, generator=g, dtype=dtype)).expand(B, T).clone()
    return old, lp, adv, mask


def _loss_and_grad(fn, old, lp, adv, mask, mode, config, w=None):
    x = lp.clone().requires_grad_(True)
    loss, metrics = fn(old_log_prob=old, log_prob=x, advantages=adv, response_mask=mask, loss_agg_mode=mode,
                       config=config, rollout_is_weights=w)
    loss.backward()
    return loss.detach(), x.grad, metrics


@pytest.mark.parametrize("mode", AGG)
def test_kl_cov_equals_verl_loss_and_gradient(mode):
    ours = core_algos.get_policy_loss_fn(ev.KL_COV_NAME)
    cfg = _config(kl_cov_ratio=0.05, ppo_kl_coef=0.7)
    worst = 0.0
    for seed in range(4):
        old, lp, adv, mask = _batch(seed)
        gen = torch.Generator().manual_seed(9)
        w = None if seed % 2 else torch.rand(old.shape, generator=gen, dtype=old.dtype)
        l_v, g_v, _ = _loss_and_grad(core_algos.compute_policy_loss_kl_cov, old, lp, adv, mask, mode, cfg, w)
        l_o, g_o, met = _loss_and_grad(ours, old, lp, adv, mask, mode, cfg, w)
        worst = max(worst, float((l_o - l_v).abs()), float((g_o - g_v).abs().max()))
        assert int(met["actor/em_selected_count"]) == max(1, int(0.05 * int(mask.sum())))
    assert worst < 1e-12, f"max |Δ| loss/grad vs verl kl_cov = {worst:.3g}"
    print(f"KL-Cov vs verl kl_cov ({mode}): max |Δ| of loss and gradient = {worst:.3g}")


def test_kl_cov_equals_verl_with_global_batch_info():
    old, lp, adv, mask = _batch(5)
    cfg = _config(kl_cov_ratio=0.02, ppo_kl_coef=1.0)
    cfg.global_batch_info = dict(dp_size=1, batch_num_tokens=int(mask.sum()) * 2, global_batch_size=12,
                                 loss_scale_factor=None)
    l_v, g_v, _ = _loss_and_grad(core_algos.compute_policy_loss_kl_cov, old, lp, adv, mask, "token-mean", cfg)
    l_o, g_o, _ = _loss_and_grad(ev.compute_policy_loss_em_kl_cov, old, lp, adv, mask, "token-mean", cfg)
    assert float((l_o - l_v).abs()) < 1e-12 and float((g_o - g_v).abs().max()) < 1e-12


def test_kl_cov_selection_matters_so_the_equality_is_not_vacuous():
    old, lp, adv, mask = _batch(1)
    cfg = _config(kl_cov_ratio=0.05, ppo_kl_coef=0.7)
    _, g_o, _ = _loss_and_grad(ev.compute_policy_loss_em_kl_cov, old, lp, adv, mask, "token-mean", cfg)
    _, g_0, _ = _loss_and_grad(ev.compute_policy_loss_em_kl_cov, old, lp, adv, mask, "token-mean",
                               _config(kl_cov_ratio=0.05, ppo_kl_coef=0.0))
    assert float((g_o - g_0).abs().max()) > 1e-3


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_clip_cov_equals_verl_when_every_candidate_is_selected(mode):
    """verl draws its subset with torch.randperm (global RNG); with quota >= #candidates both select all."""
    cfg = _config(clip_cov_ratio=0.05, clip_cov_lb=0.5, clip_cov_ub=0.6)
    checked = 0
    for seed in range(6):
        old, lp, adv, mask = _batch(seed, B=8, T=40, adv_scale=1.5)
        sel = ev.select_tokens("clip_cov", old, lp, adv, mask, cfg)
        if not 0 < int(sel.sum()) < max(1, int(0.05 * int(mask.sum()))):
            continue
        l_v, g_v, m_v = _loss_and_grad(core_algos.compute_policy_loss_clip_cov, old, lp, adv, mask, mode, cfg)
        l_o, g_o, m_o = _loss_and_grad(ev.compute_policy_loss_em_clip_cov, old, lp, adv, mask, mode, cfg)
        assert float((l_o - l_v).abs()) < 1e-12 and float((g_o - g_v).abs().max()) < 1e-12
        assert abs(float(m_o["actor/pg_clipfrac"]) - m_v["actor/pg_clipfrac"]) < 1e-6  # verl: float32 mean
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("name", ["kl_cov", "clip_cov"])
def test_one_objective_call_equals_the_objective_with_precomputed_stats(name):
    """The plugin hands the objective hooks (no second ρ / PPO / Eq. 10 pass): its loss, gradient and metrics
    equal, bit for bit, the objective called with the float64-sum means and the selection given up front."""
    from theory.cov_selection import CovStats, prepare_tokens
    from theory.objectives import clip_cov, kl_cov

    cfg = _config(clip_cov_ratio=0.02, clip_cov_lb=0.0, clip_cov_ub=5.0, kl_cov_ratio=0.02, ppo_kl_coef=0.7)
    fn = ev.compute_policy_loss_em_kl_cov if name == "kl_cov" else ev.compute_policy_loss_em_clip_cov
    for dtype in (torch.float32, torch.float64):
        old, lp, adv, mask = (t.to(dtype) if t.is_floating_point() else t for t in _batch(5, B=8, T=50))
        ev.configure(seed=11)
        loss, grad, met = _loss_and_grad(fn, old, lp, adv, mask, "token-mean", cfg)
        ev.configure(seed=11)
        sel = ev.select_tokens(name, old, lp, adv, mask, cfg)
        ev.configure()
        p_lp, _, p_adv, m, _ = prepare_tokens(lp, old, adv, mask)
        n = m.sum().double()
        means = (torch.stack([p_lp.double().sum(), p_adv.double().sum()]) / n).to(dtype)
        stats = CovStats(mean_log_prob=means[0], mean_advantage=means[1], selected=sel)
        x = lp.clone().requires_grad_(True)
        obj = kl_cov if name == "kl_cov" else clip_cov
        mat, want = obj(x, old, adv, mask, **ev.hyperparameters(name, cfg), stats=stats)
        ref = core_algos.agg_loss(loss_mat=mat, loss_mask=mask, loss_agg_mode="token-mean")
        ref.backward()
        assert 0 < int(sel.sum()) and torch.equal(loss, ref.detach()) and torch.equal(grad, x.grad), dtype
        for key, v in want.items():
            assert torch.equal(met["actor/em_" + key.split("/", 1)[1]], v), key
        assert int(met["actor/em_num_tokens_global"]) == int(mask.sum())


def test_clip_cov_is_seeded_and_ignores_the_global_rng():
    old, lp, adv, mask = _batch(3, B=8, T=40, adv_scale=2.0)
    cfg = _config(clip_cov_ratio=0.01, clip_cov_lb=0.0, clip_cov_ub=5.0)
    picks = []
    for global_seed, seed in ((1, 7), (2, 7), (1, 8)):
        torch.manual_seed(global_seed)
        ev.configure(seed=seed)
        picks.append(ev.select_tokens("clip_cov", old, lp, adv, mask, cfg))
    ev.configure()
    assert torch.equal(picks[0], picks[1]) and not torch.equal(picks[0], picks[2])
    assert int(picks[0].sum()) == max(1, int(0.01 * int(mask.sum())))


def test_uniform_keys_depend_only_on_seed_counter_row_column():
    rows = torch.arange(5, 9)
    a = ev.uniform_keys(3, 1, rows, 7)
    assert torch.equal(a[1:], ev.uniform_keys(3, 1, rows[1:], 7))
    assert torch.equal(a[:, :4], ev.uniform_keys(3, 1, rows, 4))
    assert not torch.equal(a, ev.uniform_keys(3, 2, rows, 7))
    assert not torch.equal(a, ev.uniform_keys(4, 1, rows, 7))
    many = ev.uniform_keys(0, 0, torch.arange(200), 500)
    assert 0.0 <= float(many.min()) and float(many.max()) < 1.0 and abs(float(many.mean()) - 0.5) < 0.01


@pytest.mark.parametrize("seed", range(4))
def test_the_cpu_random_pick_is_the_top_k_of_the_uniform_keys(seed):
    """One process on CPU hashes only the eligible tokens (cached position hashes); it picks what the general
    path (top-k of :func:`uniform_keys` over the whole block, used on GPUs and across ranks) picks."""
    g = torch.Generator().manual_seed(seed)
    eligible = torch.rand(7, 33, generator=g) < 0.4
    keys = ev.uniform_keys(seed, 5, torch.arange(7), 33)
    for k in (0, 1, 3, 10, int(eligible.sum()), int(eligible.sum()) + 4):
        kk = torch.tensor(k)
        pick = ev._local_random_top_k(seed, 5, eligible, kk)
        assert torch.equal(pick, top_k_mask(keys, eligible, kk)), k
        assert int(pick.sum()) == min(k, int(eligible.sum()))
    other = ev._local_random_top_k(seed, 6, eligible, torch.tensor(3))    # the next call picks anew
    assert not torch.equal(other, ev._local_random_top_k(seed, 5, eligible, torch.tensor(3)))


@pytest.mark.parametrize("seed", range(6))
def test_global_top_k_equals_top_k_mask(seed):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randint(-3, 4, (5, 9), generator=g).double() * (0.5 if seed % 2 else 1e-300)
    keys[0, 0] = -0.0
    eligible = torch.rand(5, 9, generator=g) < 0.7
    for k in range(0, int(eligible.sum()) + 3):
        kk = torch.tensor(k)
        want = top_k_mask(keys, eligible, kk)
        assert torch.equal(ev.global_top_k(keys, eligible, kk), want), k


def test_global_top_k_rejects_a_bad_mask():
    with pytest.raises(ValueError, match="bool eligible"):
        ev.global_top_k(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor(1))


def test_hyperparameters_read_verl_fields_and_check_units(monkeypatch):
    h = ev.hyperparameters("clip_cov", OmegaConf.create(dict(clip_ratio=0.3, clip_ratio_low=None,
                                                             clip_ratio_high=0.28, policy_loss={})))
    got = (h["eps_low"], h["eps_high"], h["clip_ratio"], h["cov_lb"], h["cov_ub"])
    assert got == (0.3, 0.28, 2e-4, 1.0, 5.0)
    assert ev.hyperparameters("kl_cov", _config(kl_cov_ratio=0.002, ppo_kl_coef=1))["kl_coef"] == 1.0
    with pytest.raises(ValueError, match="fraction"):          # the official repo's percent (0.2 = 0.2 %)
        ev.hyperparameters("kl_cov", _config(kl_cov_ratio=0.2))
    with pytest.raises(ValueError, match="cov_lb"):
        ev.hyperparameters("clip_cov", _config(clip_cov_lb=5.0, clip_cov_ub=1.0))
    with pytest.raises(ValueError, match="kl_coef"):
        ev.hyperparameters("kl_cov", _config(ppo_kl_coef=-1.0))
    with pytest.raises(ValueError, match="no actor config"):
        ev.hyperparameters("kl_cov", None)
    with pytest.raises(ValueError, match="unknown objective"):
        ev.hyperparameters("ppo", _config())
    monkeypatch.setenv(ev.ALLOW_LARGE_RATIO_ENV, "1")
    assert ev.hyperparameters("kl_cov", _config(kl_cov_ratio=0.2))["kl_ratio"] == 0.2
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        z = torch.zeros(3)
        ev.policy_loss("kl_cov", z, z, z, torch.ones(3, dtype=torch.bool), config=_config())


def test_loaded_by_verl_external_modules_env_var():
    code = ("import verl\nfrom verl.trainer.ppo.core_algos import get_policy_loss_fn\n"
            "print(get_policy_loss_fn('em_kl_cov').__module__, get_policy_loss_fn('em_clip_cov').__name__)")
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "integrations.verl"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "integrations.verl compute_policy_loss_em_clip_cov" in out.stdout


# ----------------------------------------------------------------------------- 2 gloo processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _full_batch():
    """Rows 0-3 on rank 0 (T = 30), rows 4-8 on rank 1 (T = 22, right-padded to 30 when concatenated)."""
    old, lp, adv, mask = _batch(11, B=9, T=30, adv_scale=2.0)
    mask[4:, 22:] = False
    return old, lp, adv, mask


def _shard(t, rank):
    return t[:4] if rank == 0 else t[4:, :22]


def _worker(rank: int, port: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        out = {}
        old, lp, adv, mask = (_shard(t, rank) for t in _full_batch())
        for name, cfg in (("kl_cov", _config(kl_cov_ratio=0.03, ppo_kl_coef=1.0)),
                          ("clip_cov", _config(clip_cov_ratio=0.02, clip_cov_lb=0.0, clip_cov_ub=5.0))):
            ev.configure(seed=5)
            out[name] = ev.select_tokens(name, old, lp, adv, mask, cfg)
            cfg.global_batch_info = dict(dp_size=2, batch_num_tokens=int(_full_batch()[3].sum()))
            ev.configure(seed=5)
            fn = getattr(ev, f"compute_policy_loss_em_{name}")
            loss, grad, met = _loss_and_grad(fn, old, lp, adv, mask, "token-mean", cfg)
            out[name + "_loss"], out[name + "_grad"] = loss, grad
            out[name + "_count"] = int(met["actor/em_selected_count_global"])
        # Ulysses sequence parallelism: both ranks hold the same data (one dp rank of sp size 2)
        from verl.utils import ulysses

        ulysses.set_ulysses_sequence_parallel_group(dist.group.WORLD)
        full = _full_batch()
        ev.configure(seed=5)
        out["sp"] = ev.select_tokens("kl_cov", *full, _config(kl_cov_ratio=0.03))
        ulysses.set_ulysses_sequence_parallel_group(None)
        # numpy copies: a tensor sent through the queue lives in shared memory this process frees on exit
        queue.put((rank, {k: v.numpy().copy() if isinstance(v, torch.Tensor) else v for k, v in out.items()}))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_select_what_one_process_selects_on_the_concatenated_batch():
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {r: {k: torch.from_numpy(v) if hasattr(v, "dtype") else v for k, v in out.items()}
               for r, out in (queue.get(timeout=300) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    old, lp, adv, mask = _full_batch()
    for name, cfg in (("kl_cov", _config(kl_cov_ratio=0.03, ppo_kl_coef=1.0)),
                      ("clip_cov", _config(clip_cov_ratio=0.02, clip_cov_lb=0.0, clip_cov_ub=5.0))):
        ev.configure(seed=5)
        one = ev.select_tokens(name, old, lp, adv, mask, cfg)
        two = torch.zeros_like(one)
        two[:4], two[4:, :22] = results[0][name], results[1][name]
        quota = max(1, int((0.03 if name == "kl_cov" else 0.02) * int(mask.sum())))
        assert int(one.sum()) == quota            # the global quota (per-rank quotas would differ)
        assert int(one.sum()) > 1 and torch.equal(one, two), name
        assert results[0][name + "_count"] == results[1][name + "_count"] == int(one.sum())
        local = torch.zeros_like(one)  # what per-rank selection (verl's own scope) would pick instead
        local[:4] = ev.select_tokens(name, *(_shard(t, 0) for t in (old, lp, adv, mask)), cfg)
        local[4:, :22] = ev.select_tokens(name, *(_shard(t, 1) for t in (old, lp, adv, mask)), cfg)
        assert not torch.equal(local, one), name
        ev.configure(seed=5)
        l1, g1, _ = _loss_and_grad(getattr(ev, f"compute_policy_loss_em_{name}"), old, lp, adv, mask,
                                   "token-mean", cfg)
        l2 = (results[0][name + "_loss"] + results[1][name + "_loss"]) / 2   # dp_size = 2: gradient averaging
        g2 = torch.zeros_like(g1)
        g2[:4], g2[4:, :22] = results[0][name + "_grad"] / 2, results[1][name + "_grad"] / 2
        assert abs(float(l1 - l2)) < 1e-12 and float((g1 - g2).abs().max()) < 1e-12, name
    ev.configure(seed=5)
    one_sp = ev.select_tokens("kl_cov", old, lp, adv, mask, _config(kl_cov_ratio=0.03))
    assert torch.equal(results[0]["sp"], one_sp) and torch.equal(results[1]["sp"], one_sp)
    ev.configure()
