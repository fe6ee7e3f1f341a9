"""theory.surrogate and the optimised paths of theory.objectives / theory.cov_selection against the naive
formulas they replace (docs/theory.md §1.10, "The gradient in closed form"): the closed-form gradient
against autograd through the plain expressions in float64 (clamps, clip ties, masked garbage), the clip
counts, the CPU top-k against the sort, the one-read input check, and the multiply-masking."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tolerances import ATOL_F32, EXACT_F64, RTOL_F32
from theory.aggregation import _masked_zero as masked_zero
from theory.aggregation import aggregate
from theory.cov_selection import _top_k_mask_sorted, prepare_tokens, top_k_mask
from theory.objectives import (LOG_RATIO_CLAMP, METRIC_ABS_LOG_RATIO, clip_cov, compute_cov_stats, kl_cov,
                               ppo_clip, vanilla_pg)
from theory.surrogate import clip_counts, ppo_terms, with_gradient


def _batch(seed, B=5, T=30, dtype=torch.float64):
    """Off-policy log-probs with a few |log ρ| > 20 and one = 20 exactly, ±A, garbage at masked tokens."""
    g = torch.Generator().manual_seed(seed)
    old = -6.0 * torch.rand(B, T, generator=g, dtype=torch.float64)
    lp = old + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)
    old[2, 3] = -4.0                                  # lp − old = 20 exactly at [2, 3]
    lp[0, 1], lp[1, 2], lp[2, 3] = old[0, 1] + 25.0, old[1, 2] - 30.0, old[2, 3] + LOG_RATIO_CLAMP
    adv = 2.0 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv[3, :] = 0.0                                   # A = 0: the two PPO branches tie everywhere
    mask = torch.rand(B, T, generator=g) < 0.8
    mask[:3, 1:4] = True
    lp[~mask] = 1e3                                   # garbage where masked (finite: CPU inputs are checked)
    adv[~mask] = -1e4
    return lp.to(dtype), old.to(dtype), adv.to(dtype), mask


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _naive(name, x, old, adv, mask, selected=None, *, eps=(0.2, 0.2), beta=1.0):
    """The loss matrix as plain autograd expressions (what the objectives computed before the closed form)."""
    lp = torch.where(mask, x, old)
    oldz, advz = torch.where(mask, old, 0.0), torch.where(mask, adv, 0.0)
    log_ratio = torch.where(mask, lp - oldz, 0.0)
    ratio = torch.exp(torch.clamp(log_ratio, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    if name == "vanilla_pg":
        return torch.where(mask, -advz * ratio, 0.0)
    if name == "kl_cov":
        return torch.where(mask, -advz * ratio + torch.where(selected, beta * log_ratio.abs(), 0.0), 0.0)
    ppo = torch.maximum(-advz * ratio, -advz * torch.clamp(ratio, 1 - eps[0], 1 + eps[1]))
    keep = mask if selected is None else mask & ~selected
    return torch.where(keep, ppo, 0.0)


def _loss_grad(L_fn, lp):
    x = lp.clone().requires_grad_(True)
    L = L_fn(x)
    w = torch.linspace(0.5, 1.5, L.numel(), dtype=L.dtype).reshape(L.shape)   # a non-uniform upstream grad
    (L * w).sum().backward()
    return L.detach(), x.grad


_KW = dict(vanilla_pg={}, ppo_clip=dict(eps_low=0.2, eps_high=0.2), kl_cov=dict(kl_ratio=0.05, kl_coef=0.7),
           clip_cov=dict(clip_ratio=0.05, cov_lb=-50.0, cov_ub=50.0))


@pytest.mark.parametrize("name", ["vanilla_pg", "ppo_clip", "clip_cov", "kl_cov"])
@pytest.mark.parametrize("seed", range(4))
def test_closed_form_gradient_equals_autograd_of_the_naive_expression(name, seed):
    lp, old, adv, mask = _batch(seed)
    kw = _KW[name]
    fn = dict(vanilla_pg=vanilla_pg, ppo_clip=ppo_clip, clip_cov=clip_cov, kl_cov=kl_cov)[name]
    sel = None
    if name in ("clip_cov", "kl_cov"):
        sel = compute_cov_stats(lp, old, adv, mask, objective=name, generator=_gen(seed), **kw).selected
        assert int(sel.sum()) > 1
        kw = dict(kw, generator=_gen(seed))
    L, g = _loss_grad(lambda x: fn(x, old, adv, mask, **kw)[0], lp)
    L0, g0 = _loss_grad(lambda x: _naive(name, x, old, adv, mask, sel, beta=kw.get("kl_coef", 1.0)), lp)
    torch.testing.assert_close(L, L0, atol=EXACT_F64, rtol=EXACT_F64)
    torch.testing.assert_close(g, g0, atol=EXACT_F64, rtol=EXACT_F64)
    assert torch.all(g[~mask] == 0)
    if name == "vanilla_pg":    # log ρ = 25 and −30 are clamped (zero gradient), log ρ = 20 is not
        assert g[0, 1] == 0 and g[1, 2] == 0 and g[2, 3] != 0


def test_the_gradient_comparison_can_fail():
    """The check above would catch a wrong derivative: a flipped sign, or one that ignores the clip."""
    lp, old, adv, mask = _batch(0)
    _, g0 = _loss_grad(lambda x: _naive("ppo_clip", x, old, adv, mask), lp)
    for flip, ignore_clip in ((-1.0, False), (1.0, True)):
        def loss(x):
            p_lp, p_old, p_adv, m = prepare_tokens(x.detach(), old, adv, mask)[:4]
            ratio = torch.exp(torch.clamp(p_lp - p_old, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
            pg1, ppo, clipped = ppo_terms(ratio, -p_adv, 0.2, 0.2)
            off = ~m if ignore_clip else clipped | ~m
            return with_gradient(x, torch.where(m, ppo, 0.0), flip * torch.where(off, 0.0, pg1))
        _, g = _loss_grad(loss, lp)
        assert not torch.allclose(g, g0, atol=1e-6)


def test_a_tie_of_the_ppo_branches_at_the_clip_bound_gets_the_whole_unclipped_gradient():
    """ρ = 1 + ε_high exactly: autograd's max splits the gradient ½ / ½ over two equal branches; the closed
    form gives the unclipped branch's −Aρ, the same sum."""
    d = torch.tensor([[0.15, -0.1, 0.0]], dtype=torch.float64)
    eps_high = float(torch.exp(d[0, 0])) - 1.0                  # 1 + eps_high == ρ exactly (Sterbenz)
    old = torch.full_like(d, -2.0)
    adv = torch.tensor([[1.5, -1.0, 0.7]], dtype=torch.float64)
    mask = torch.ones_like(d, dtype=torch.bool)
    lp = old + d
    L, g = _loss_grad(lambda x: ppo_clip(x, old, adv, mask, eps_low=0.2, eps_high=eps_high)[0], lp)
    _, g0 = _loss_grad(lambda x: _naive("ppo_clip", x, old, adv, mask, eps=(0.2, eps_high)), lp)
    torch.testing.assert_close(g, g0, atol=EXACT_F64, rtol=EXACT_F64)
    assert g[0, 0] != 0


def test_with_gradient_checks_and_passes_through_without_grad():
    x = torch.zeros(2, 3, requires_grad=True)
    v, dv = torch.ones(2, 3), torch.full((2, 3), 2.0)
    with pytest.raises(ValueError, match="same shape"):
        with_gradient(x, torch.ones(3), dv)
    with pytest.raises(ValueError, match="without autograd"):
        with_gradient(x, v.clone().requires_grad_(True), dv)
    assert with_gradient(x.detach(), v, dv) is v
    with torch.no_grad():
        assert with_gradient(x, v, dv) is v
    with_gradient(x, v, dv).sum().backward()
    assert torch.equal(x.grad, dv)


def test_half_precision_log_probs_get_a_gradient_of_their_own_dtype():
    lp, old, adv, mask = _batch(1, dtype=torch.float32)
    x = lp.to(torch.bfloat16).requires_grad_(True)
    aggregate(ppo_clip(x, old, adv, mask)[0], mask, "token-mean").backward()
    y = x.detach().float().requires_grad_(True)
    aggregate(ppo_clip(y, old, adv, mask)[0], mask, "token-mean").backward()
    assert x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(x.grad.float(), y.grad, atol=1e-3, rtol=2e-2)


@given(seed=st.integers(0, 2**31 - 1), eps=st.sampled_from([(0.2, 0.2), (0.2, 0.28), (1.0, 1.0), (0.0, 0.0)]))
def test_clip_counts_equal_the_comparison_masks(seed, eps):
    lp, old, adv, mask = _batch(seed)
    p_lp, p_old, p_adv, m = prepare_tokens(lp, old, adv, mask)[:4]
    ratio = torch.exp(torch.clamp(p_lp - p_old, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    _, _, clipped = ppo_terms(ratio, -p_adv, *eps)
    low, high = clip_counts(clipped, -p_adv)
    assert int(low) == int((clipped & (ratio < 1 - eps[0])).sum())
    assert int(high) == int((clipped & (ratio > 1 + eps[1])).sum())
    assert not (clipped & ~m).any()


def _naive_top_k(keys, eligible, k):
    items = sorted(((-float(keys.reshape(-1)[i]), i) for i in range(keys.numel()) if eligible.reshape(-1)[i]))
    out = torch.zeros(keys.numel(), dtype=torch.bool)
    for _, i in items[:k]:
        out[i] = True
    return out.reshape(keys.shape)


@pytest.mark.parametrize("seed", range(8))
def test_cpu_top_k_equals_the_sort_and_a_python_loop(seed):
    """Ties (integers, ±0) and large ineligible keys (so the CPU path's first topk misses)."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randint(-3, 4, (6, 11), generator=g).double() * (0.5 if seed % 2 else 1.0)
    keys[0, 0] = -0.0
    eligible = torch.rand(6, 11, generator=g) < 0.7
    keys[~eligible & (torch.rand(6, 11, generator=g) < 0.5)] = 9.0
    for k in range(0, int(eligible.sum()) + 3):
        kk = torch.tensor(k)
        want = _naive_top_k(keys, eligible, k)
        assert torch.equal(top_k_mask(keys, eligible, kk), want), k
        assert torch.equal(_top_k_mask_sorted(keys, eligible, kk), want), k


def test_top_k_cannot_pass_with_the_wrong_order():
    keys = torch.arange(12.0).reshape(3, 4)
    eligible = torch.ones(3, 4, dtype=torch.bool)
    assert not torch.equal(top_k_mask(keys, eligible, torch.tensor(3)), _naive_top_k(-keys, eligible, 3))


@pytest.mark.parametrize("bad", ["log_prob", "old_log_prob", "advantages"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_one_read_input_check_names_the_offender(bad, value):
    lp, old, adv, mask = _batch(2)
    tensors = dict(log_prob=lp, old_log_prob=old, advantages=adv)
    tensors[bad] = tensors[bad].clone()
    tensors[bad][~mask] = value                       # even where masked
    with pytest.raises(ValueError, match=f"{bad} contains"):
        prepare_tokens(tensors["log_prob"], tensors["old_log_prob"], tensors["advantages"], mask)


def test_finite_inputs_whose_sum_overflows_pass_the_check():
    lp, old, adv, mask = _batch(3, dtype=torch.float32)
    big = torch.full_like(adv, 3e38)
    prepare_tokens(lp, old, big, mask)


def test_masked_zero_equals_where():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, generator=g)
    m = torch.rand(4, 9, generator=g) < 0.5
    want = torch.where(m, x, 0.0)
    assert torch.equal(masked_zero(x, m, finite=True), want)
    assert torch.equal(masked_zero(x, m, finite=False), want)
    y = x.clone()
    y[~m] = math.nan
    assert torch.equal(masked_zero(y, m, finite=False), want)     # the where form keeps NaN garbage out


def test_kl_cov_reports_the_mean_absolute_log_ratio():
    lp, old, adv, mask = _batch(4)
    _, met = kl_cov(lp, old, adv, mask, kl_ratio=0.05)
    want = torch.where(mask, (lp - old).abs(), 0.0).sum() / mask.sum()
    torch.testing.assert_close(met[METRIC_ABS_LOG_RATIO], want, atol=EXACT_F64, rtol=EXACT_F64)


def test_float32_objective_is_close_to_float64():
    lp, old, adv, mask = _batch(5)
    hp = dict(clip_ratio=0.05, cov_lb=-50.0, cov_ub=50.0)
    _, g64 = _loss_grad(lambda x: clip_cov(x, old, adv, mask, **hp, generator=_gen(1))[0], lp)
    _, g32 = _loss_grad(lambda x: clip_cov(x, old.float(), adv.float(), mask, **hp, generator=_gen(1))[0],
                        lp.float())
    scale = float(g64.abs().max())
    torch.testing.assert_close(g32.double() / scale, g64 / scale, atol=ATOL_F32, rtol=RTOL_F32)


@pytest.mark.parametrize("seed", range(6))
def test_cpu_top_k_of_a_large_block_equals_the_sort(seed):
    """Large enough for the chunked search (>= 4k chunks of 64): ties (few distinct values), many equal
    keys at the threshold, ineligible entries among the largest."""
    g = torch.Generator().manual_seed(seed)
    levels = (3, 50, 10_000)[seed % 3]
    keys = torch.randint(0, levels, (16, 512), generator=g).float()
    eligible = torch.rand(16, 512, generator=g) < 0.8
    for k in (1, 5, 41, 100, int(eligible.sum()) - 1):
        kk = torch.tensor(k)
        assert torch.equal(top_k_mask(keys, eligible, kk), _top_k_mask_sorted(keys, eligible, kk)), k


def test_chunked_largest_has_the_values_of_topk():
    from theory.cov_selection import _largest
    g = torch.Generator().manual_seed(0)
    flat = torch.randn(64 * 300, generator=g)
    for m in (1, 7, 41, 75):
        values, indices = _largest(flat, m)
        assert torch.equal(values, torch.topk(flat, m).values) and torch.equal(flat[indices], values)


@pytest.mark.parametrize("name", ["vanilla_pg", "ppo_clip", "clip_cov", "kl_cov"])
def test_the_accelerator_paths_give_what_the_cpu_shortcuts_give(name, monkeypatch):
    """Off the CPU the objectives mask with ``where``, keep the clamp test and sort for the top-k; run those
    paths here (theory._checks._DEVICE_PATHS_ON_CPU) and compare loss, gradient and metrics."""
    import theory._checks as checks
    lp, old, adv, mask = _batch(6, dtype=torch.float32)
    fn = dict(vanilla_pg=vanilla_pg, ppo_clip=ppo_clip, clip_cov=clip_cov, kl_cov=kl_cov)[name]
    results = []
    for device_paths in (False, True):
        monkeypatch.setattr(checks, "_DEVICE_PATHS_ON_CPU", device_paths)
        x = lp.clone().requires_grad_(True)
        extra = {"generator": _gen(3)} if name.endswith("_cov") else {}
        L, met = fn(x, old, adv, mask, **_KW[name], **extra)
        aggregate(L, mask, "token-mean").backward()
        results.append((L.detach(), x.grad, met))
    (L0, g0, m0), (L1, g1, m1) = results
    assert torch.equal(L0, L1) and torch.equal(g0, g1)
    assert m0.keys() == m1.keys() and all(torch.equal(m0[k], m1[k]) for k in m0)
