"""theory.objectives: PPO / clip-higher / Clip-Cov / KL-Cov semantics (docs/theory.md §4 statement 20,
docs/ecosystem.md §1.3-1.4), the selection scope with global statistics, and the additive terms."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tolerances import ATOL_F32, EXACT_F64, MC_SIGMAS, RTOL_F32, RTOL_F64
from theory.aggregation import AGG_MODES, aggregate, global_counts
from theory.cov_selection import prepare_tokens, scope_moments
from theory.covariance import token_covariance
from theory.kl import categorical_kl
from theory.objectives import (
    KNOWN_OBJECTIVES,
    METRIC_CANDIDATE_FRAC,
    METRIC_COV_MEAN,
    METRIC_DESCRIPTIONS,
    METRIC_NUM_TOKENS,
    METRIC_SELECTED_COUNT,
    OBJECTIVES,
    CovStats,
    ObjectiveName,
    clip_cov,
    clip_higher,
    compute_cov_stats,
    get_objective,
    kl_cov,
    objective_spec,
    ppo_clip,
    register_objective,
    validate_objective_params,
    vanilla_pg,
)
from theory.regularizers import entropy_bonus, reference_kl


def _batch(seed, B=6, T=40, *, drift=0.4, p_mask=0.85, dtype=torch.float64):
    """log π in [-8, 0) (so Eq. 10 products reach the (1, 5) window), off-policy drift, ±A per row."""
    g = torch.Generator().manual_seed(seed)
    old = -8.0 * torch.rand(B, T, generator=g, dtype=torch.float64)
    lp = (old + drift * torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=-1e-3)
    adv = (2.0 * torch.randn(B, 1, generator=g, dtype=torch.float64)).expand(B, T).clone()
    adv += 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    mask = torch.rand(B, T, generator=g) < p_mask
    return lp.to(dtype), old.to(dtype), adv.to(dtype), mask


def _grad(fn, lp, old, adv, mask, mode="token-mean", **kw):
    x = lp.clone().requires_grad_(True)
    L, metrics = fn(x, old, adv, mask, **kw)
    loss = aggregate(L, mask, mode)
    loss.backward()
    return L.detach(), loss.detach(), x.grad, metrics


#: hyperparameters that select a few tokens even in small test batches
_COV_KW_SMALL = {"clip_cov": dict(clip_ratio=0.02, cov_lb=0.5, cov_ub=20.0), "kl_cov": dict(kl_ratio=0.02)}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------- oracles


def _naive_ppo(lp, old, adv, mask, eps_low, eps_high):
    """Per-token loop in float64: loss, and whether the PPO clip is active."""
    B, T = lp.shape
    loss = torch.zeros(B, T, dtype=torch.float64)
    clipped = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            r = math.exp(float(lp[b, t]) - float(old[b, t]))
            a = float(adv[b, t])
            l1, l2 = -a * r, -a * min(max(r, 1 - eps_low), 1 + eps_high)
            loss[b, t] = max(l1, l2)
            clipped[b, t] = l2 > l1
    return loss, clipped


def _naive_cov(lp, adv, mask):
    """Eq. 10 with plain Python means over the unmasked tokens."""
    idx = [(b, t) for b in range(lp.shape[0]) for t in range(lp.shape[1]) if mask[b, t]]
    ml = sum(float(lp[i]) for i in idx) / max(len(idx), 1)
    ma = sum(float(adv[i]) for i in idx) / max(len(idx), 1)
    cov = torch.zeros(lp.shape, dtype=torch.float64)
    for i in idx:
        cov[i] = (float(lp[i]) - ml) * (float(adv[i]) - ma)
    return cov


def _quota(ratio, n):
    return max(1, int(ratio * n))


# ---------------------------------------------------------------------------------------- PPO


@given(seed=st.integers(0, 2**31 - 1), eps=st.sampled_from([(0.2, 0.2), (0.2, 0.28), (0.1, 0.5), (1.0, 1.0)]))
def test_ppo_clip_matches_naive_loop(seed, eps):
    lp, old, adv, mask = _batch(seed, B=3, T=12)
    L, metrics = ppo_clip(lp, old, adv, mask, eps_low=eps[0], eps_high=eps[1])
    want, clipped = _naive_ppo(lp, old, adv, mask, *eps)
    torch.testing.assert_close(L, want, atol=EXACT_F64, rtol=EXACT_F64)
    n = int(mask.sum())
    assert float(metrics["objective/clip_frac"]) == pytest.approx(int(clipped.sum()) / n)
    low = clipped & (lp - old < 0)
    assert float(metrics["objective/clip_frac_low"]) == pytest.approx(int(low.sum()) / n)
    assert float(metrics["objective/clip_frac_high"]) == pytest.approx(int((clipped & ~low).sum()) / n)


def test_clip_higher_is_ppo_with_eps_high_028():
    lp, old, adv, mask = _batch(1)
    assert torch.equal(clip_higher(lp, old, adv, mask)[0], ppo_clip(lp, old, adv, mask, eps_high=0.28)[0])
    assert not torch.equal(clip_higher(lp, old, adv, mask)[0], ppo_clip(lp, old, adv, mask)[0])


def test_log_ratio_clamped_before_exp():
    lp = torch.tensor([[0.0, -1.0]])
    old = torch.tensor([[-100.0, -1.0]])
    adv = torch.tensor([[1.0, 1.0]])
    L, _ = vanilla_pg(lp, old, adv, torch.ones(1, 2, dtype=torch.bool))
    assert torch.isfinite(L).all() and float(L[0, 0]) == pytest.approx(-math.exp(20.0))


# ---------------------------------------------------------------------------------------- Clip-Cov


def test_clip_cov_without_candidates_equals_ppo_exactly():
    lp, old, adv, mask = _batch(2)
    cov = token_covariance(lp, adv, mask)
    ub = float(cov[mask].min()) - 1.0                            # below every covariance
    want = _grad(ppo_clip, lp, old, adv, mask)
    got = _grad(clip_cov, lp, old, adv, mask, cov_lb=ub - 1.0, cov_ub=ub, generator=_gen(0))
    assert int(got[3][METRIC_SELECTED_COUNT]) == 0
    for a, b in zip(got[:3], want[:3]):
        assert torch.equal(a, b)


@given(seed=st.integers(0, 2**31 - 1), ratio=st.sampled_from([0.0, 2e-4, 0.01, 0.05]),
       bounds=st.sampled_from([(1.0, 5.0), (0.5, 2.0), (4.0, 4.5), (-1.0, 10.0)]),
       eps=st.sampled_from([0.2, 1.0]))
def test_clip_cov_selection_semantics(seed, ratio, bounds, eps):
    """count = min(max(1, ⌊rN⌋), #candidates); selected ⊂ candidates; their loss and gradient are 0;
    every other token keeps its PPO loss and gradient exactly."""
    lp, old, adv, mask = _batch(seed)
    kw = dict(clip_ratio=ratio, cov_lb=bounds[0], cov_ub=bounds[1], eps_low=eps, eps_high=eps)
    L, loss, grad, metrics = _grad(clip_cov, lp, old, adv, mask, generator=_gen(seed), **kw)
    L_ppo, _, grad_ppo, _ = _grad(ppo_clip, lp, old, adv, mask, eps_low=eps, eps_high=eps)

    _, clipped = _naive_ppo(lp, old, adv, mask, eps, eps)
    cov = _naive_cov(lp, adv, mask)
    cand = mask & ~clipped & (cov > bounds[0]) & (cov < bounds[1])
    sel = compute_cov_stats(lp, old, adv, mask, objective="clip_cov", generator=_gen(seed), **kw).selected

    n = int(mask.sum())
    assert int(sel.sum()) == min(_quota(ratio, n), int(cand.sum())) == int(metrics[METRIC_SELECTED_COUNT])
    assert not (sel & ~cand).any()
    assert float(metrics[METRIC_CANDIDATE_FRAC]) == pytest.approx(int(cand.sum()) / n)
    assert torch.all(L[sel] == 0) and torch.all(grad[sel] == 0)
    # unchanged elsewhere (the token-mean denominator still counts the selected tokens)
    assert torch.equal(L[~sel], L_ppo[~sel]) and torch.equal(grad[~sel], grad_ppo[~sel])


def test_clip_cov_selected_tokens_stay_in_denominator():
    lp, old, adv, mask = _batch(4)
    kw = dict(clip_ratio=0.05, cov_lb=0.0, cov_ub=50.0)
    L, metrics = clip_cov(lp, old, adv, mask, generator=_gen(1), **kw)
    assert int(metrics[METRIC_SELECTED_COUNT]) > 0
    assert float(aggregate(L, mask, "token-mean")) == pytest.approx(float(L.sum()) / int(mask.sum()))


def test_clip_cov_deterministic_with_seeded_generator():
    lp, old, adv, mask = _batch(5, B=8, T=64)
    kw = dict(clip_ratio=0.02, cov_lb=0.0, cov_ub=50.0)
    sels = [compute_cov_stats(lp, old, adv, mask, objective="clip_cov", generator=_gen(s), **kw).selected
            for s in (7, 7, 8)]
    assert torch.equal(sels[0], sels[1]) and not torch.equal(sels[0], sels[2])
    L1, _ = clip_cov(lp, old, adv, mask, generator=_gen(7), **kw)
    L2, _ = clip_cov(lp, old, adv, mask, generator=_gen(7), **kw)
    assert torch.equal(L1, L2)


def test_clip_cov_choice_is_uniform_over_candidates():
    """6 candidates, k = 2: each is chosen with probability 1/3; the 6 PPO-clipped tokens never."""
    B, T, draws = 1, 12, 3000
    lp = torch.zeros(B, T, dtype=torch.float64)
    lp[0, :6] = -4.0
    adv = torch.full((B, T), 1.5, dtype=torch.float64)
    adv[0, :6] = -1.5                                  # cov = (∓2)(∓1.5) = 3 for every token
    old = lp.clone()
    old[0, 6:] -= 1.0                                  # ρ = e > 1.2 with A > 0: PPO-clipped, not candidates
    mask = torch.ones(B, T, dtype=torch.bool)
    g = _gen(1)
    counts = torch.zeros(T, dtype=torch.float64)
    for _ in range(draws):
        counts += compute_cov_stats(lp, old, adv, mask, objective=ObjectiveName.CLIP_COV, clip_ratio=2 / 12,
                                    allow_large_ratio=True, generator=g).selected[0].double()
    assert torch.all(counts[6:] == 0) and torch.all(counts[:6].sum() == 2 * draws)
    p, se = 1 / 3, math.sqrt(draws * (1 / 3) * (2 / 3))
    assert torch.all((counts[:6] - p * draws).abs() < MC_SIGMAS * se)


# ---------------------------------------------------------------------------------------- KL-Cov


@given(seed=st.integers(0, 2**31 - 1), ratio=st.sampled_from([0.0, 2e-3, 0.05]))
def test_kl_cov_on_policy_is_vanilla_pg(seed, ratio):
    lp, _, adv, mask = _batch(seed)
    got = _grad(kl_cov, lp, lp, adv, mask, kl_ratio=ratio, kl_coef=1.0)
    want = _grad(vanilla_pg, lp, lp, adv, mask)
    for a, b in zip(got[:3], want[:3]):
        assert torch.equal(a, b)
    # vanilla −A·ρ at ρ = 1: loss −A, gradient −A / N
    n = int(mask.sum())
    torch.testing.assert_close(got[2], torch.where(mask, -adv / n, 0.0), atol=EXACT_F64, rtol=EXACT_F64)


@given(seed=st.integers(0, 2**31 - 1), ratio=st.sampled_from([0.0, 2e-4, 2e-3, 0.05]),
       coef=st.sampled_from([0.1, 1.0]))
def test_kl_cov_selects_top_k_and_penalises_them(seed, ratio, coef):
    lp, old, adv, mask = _batch(seed)
    L, metrics = kl_cov(lp, old, adv, mask, kl_ratio=ratio, kl_coef=coef)
    sel = compute_cov_stats(lp, old, adv, mask, objective="kl_cov", kl_ratio=ratio).selected
    n = int(mask.sum())
    k = _quota(ratio, n)
    assert int(sel.sum()) == k == int(metrics[METRIC_SELECTED_COUNT])
    cov = _naive_cov(lp, adv, mask)
    assert not (sel & ~mask).any()
    assert float(cov[sel].min()) >= float(cov[mask & ~sel].max())
    want = torch.where(mask, -adv * torch.exp(lp - old), 0.0) + torch.where(sel, coef * (lp - old).abs(), 0.0)
    torch.testing.assert_close(L, want, atol=EXACT_F64, rtol=EXACT_F64)


# ---------------------------------------------------------------------------------------- scope


@given(seed=st.integers(0, 2**31 - 1), n_chunks=st.integers(2, 4), mode=st.sampled_from(AGG_MODES),
       name=st.sampled_from(["clip_cov", "kl_cov", "ppo_clip"]))
def test_microbatches_with_global_stats_equal_whole_batch(seed, n_chunks, mode, name):
    lp, old, adv, mask = _batch(seed, B=8, T=24)
    kw = {"clip_cov": dict(clip_ratio=0.02, cov_lb=0.5, cov_ub=20.0),
          "kl_cov": dict(kl_ratio=0.02), "ppo_clip": {}}[name]
    fn = get_objective(name)
    x = lp.clone().requires_grad_(True)
    L, metrics = fn(x, old, adv, mask, generator=_gen(seed), **kw)
    whole = aggregate(L, mask, mode)
    whole.backward()

    stats = compute_cov_stats(lp, old, adv, mask, objective=name, generator=_gen(seed), **kw)
    counts = global_counts(mask)
    den = {"token-mean": {"global_token_count": counts["global_token_count"]},
           "seq-mean-token-sum-norm": {"norm_constant": 24.0}}.get(
        mode, {"global_seq_count": counts["global_seq_count"]})
    y = lp.clone().requires_grad_(True)
    total, selected = 0.0, 0
    for idx in torch.arange(8).chunk(n_chunks):
        Lm, mm = fn(y[idx], old[idx], adv[idx], mask[idx], stats=stats.rows(idx), **kw)
        total = total + aggregate(Lm, mask[idx], mode, **den)
        selected += int(mm.get(METRIC_SELECTED_COUNT, 0))
    total.backward()
    assert math.isclose(float(total.detach()), float(whole.detach()), rel_tol=EXACT_F64, abs_tol=EXACT_F64)
    torch.testing.assert_close(y.grad, x.grad, atol=EXACT_F64, rtol=EXACT_F64)
    assert selected == int(metrics.get(METRIC_SELECTED_COUNT, 0))


def test_local_selection_depends_on_the_split():
    """The public implementations' behaviour (verl #7818): per-micro-batch quotas add up."""
    lp, old, adv, mask = _batch(0, B=8, T=24)
    whole = int(kl_cov(lp, old, adv, mask, kl_ratio=2e-3)[1][METRIC_SELECTED_COUNT])
    split = sum(int(kl_cov(lp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1], kl_ratio=2e-3)[1][
        METRIC_SELECTED_COUNT]) for i in range(8))
    assert whole == 1 and split == 8


def test_partial_stats_means_and_quota():
    """Means alone (of the same tokens) change nothing; a quota alone fixes k for the call."""
    lp, old, adv, mask = _batch(12)
    kw = _COV_KW_SMALL["kl_cov"]
    full = compute_cov_stats(lp, old, adv, mask, objective="kl_cov", **kw)
    L0, m0 = kl_cov(lp, old, adv, mask, **kw)
    L1, m1 = kl_cov(lp, old, adv, mask, stats=CovStats(full.mean_log_prob, full.mean_advantage), **kw)
    assert torch.equal(L0, L1) and torch.equal(m0[METRIC_COV_MEAN], m1[METRIC_COV_MEAN])
    _, m2 = kl_cov(lp[:2], old[:2], adv[:2], mask[:2], stats=CovStats(quota=torch.tensor(3)), **kw)
    assert int(m2[METRIC_SELECTED_COUNT]) == 3
    _, m3 = clip_cov(lp, old, adv, mask, stats=CovStats(quota=torch.tensor(1000)), generator=_gen(0),
                     **_COV_KW_SMALL["clip_cov"])
    n = int(mask.sum())
    assert int(m3[METRIC_SELECTED_COUNT]) == round(float(m3[METRIC_CANDIDATE_FRAC]) * n)


def test_stats_hooks_reduce_and_choose():
    """CovStats.reduce makes the means and quota the scope's (two identical "ranks": same means, twice the
    quota); CovStats.choose replaces the rule's own choice (the generator is then unused)."""
    lp, old, adv, mask = _batch(21, B=8, T=60)
    kw = _COV_KW_SMALL["kl_cov"]
    n = int(mask.sum())
    seen = []

    def twice(sums):
        seen.append(sums.clone())
        return sums * 2
    _, m1 = kl_cov(lp, old, adv, mask, stats=CovStats(reduce=twice), **kw)
    assert seen and seen[0].dtype == torch.float64 and int(seen[0][2]) == n
    assert int(m1[METRIC_SELECTED_COUNT]) == max(1, math.floor(2 * n * kw["kl_ratio"]))
    assert int(m1[METRIC_NUM_TOKENS]) == n                       # the call's own N, the scope's only for k
    L0, m0 = kl_cov(lp, old, adv, mask, **kw)
    L2, m2 = kl_cov(lp, old, adv, mask, stats=CovStats(reduce=lambda s: s), **kw)
    torch.testing.assert_close(L2, L0, rtol=EXACT_F64, atol=EXACT_F64)
    assert int(m2[METRIC_SELECTED_COUNT]) == int(m0[METRIC_SELECTED_COUNT])
    assert scope_moments(lp, adv, mask, CovStats(reduce=twice))[2] == n

    def first_k(cov, eligible, k):                               # the first k eligible tokens by position
        return eligible & (eligible.reshape(-1).cumsum(0).reshape(eligible.shape) <= k)
    ckw = dict(_COV_KW_SMALL["clip_cov"], clip_ratio=0.05)
    spec = objective_spec("clip_cov")
    with torch.no_grad():                                        # the hook on prepared inputs: the same rule
        p_lp, p_old, p_adv, p_m, _ = prepare_tokens(lp, old, adv, mask)
        want = spec.select(spec.validate(ckw), p_lp, p_old, p_adv, p_m, None,
                           stats=CovStats(choose=first_k)).selected
    assert 1 < int(want.sum()) < int(mask.sum())
    losses = []
    for gen in (_gen(0), _gen(1)):
        L, met = clip_cov(lp, old, adv, mask, stats=CovStats(choose=first_k), generator=gen, **ckw)
        assert bool((L[want] == 0).all()) and int(met[METRIC_SELECTED_COUNT]) == int(want.sum())
        losses.append(L)
    assert torch.equal(losses[0], losses[1])
    _, met = kl_cov(lp, old, adv, mask, stats=CovStats(choose=first_k), **kw)
    assert int(met[METRIC_SELECTED_COUNT]) == max(1, math.floor(n * kw["kl_ratio"]))


def test_stats_hooks_are_checked():
    lp, old, adv, mask = _batch(22)
    with pytest.raises(ValueError, match="stats.reduce must be callable"):
        kl_cov(lp, old, adv, mask, stats=CovStats(reduce=3))
    with pytest.raises(ValueError, match="stats.choose must be callable"):
        clip_cov(lp, old, adv, mask, stats=CovStats(choose="top"))
    with pytest.raises(ValueError, match="without mean_log_prob"):
        kl_cov(lp, old, adv, mask, stats=CovStats(mean_log_prob=torch.tensor(0.0), reduce=lambda s: s))


def test_cov_scores_match_token_covariance():
    lp, old, adv, mask = _batch(3)
    _, metrics = clip_cov(lp, old, adv, mask, generator=_gen(0))
    want = token_covariance(lp, adv, mask).sum() / mask.sum()
    assert float(metrics[METRIC_COV_MEAN]) == pytest.approx(float(want), rel=EXACT_F64, abs=EXACT_F64)


# ---------------------------------------------------------------------------------------- general


@pytest.mark.parametrize("name", KNOWN_OBJECTIVES)
def test_masked_tokens_contribute_nothing(name):
    lp, old, adv, mask = _batch(6)
    kw = {"generator": _gen(0)}
    g_lp, g_old, g_adv = lp.clone(), old.clone(), adv.clone()
    g_lp[~mask], g_old[~mask], g_adv[~mask] = 1e4, -1e4, 1e6
    L, _, grad, metrics = _grad(get_objective(name), g_lp, g_old, g_adv, mask, **kw)
    L0, _, grad0, metrics0 = _grad(get_objective(name), lp, old, adv, mask, generator=_gen(0))
    assert torch.all(L[~mask] == 0) and torch.all(grad[~mask] == 0)
    assert torch.equal(L, L0) and torch.equal(grad, grad0)
    assert metrics.keys() == metrics0.keys()
    for k in metrics:
        assert torch.equal(metrics[k], metrics0[k]), k


@pytest.mark.parametrize("name", KNOWN_OBJECTIVES)
def test_float32_matches_float64(name):
    lp, old, adv, mask = _batch(7)
    kw = _COV_KW_SMALL.get(name, {})
    stats = compute_cov_stats(lp, old, adv, mask, objective=name, generator=_gen(0), **kw)
    L64, loss64, g64, _ = _grad(get_objective(name), lp, old, adv, mask, stats=stats, **kw)
    L32, _, g32, _ = _grad(get_objective(name), lp.float(), old.float(), adv.float(), mask, stats=stats, **kw)
    assert L32.dtype == torch.float32 and g32.dtype == torch.float32
    torch.testing.assert_close(L32.double(), L64, atol=ATOL_F32, rtol=RTOL_F32)
    torch.testing.assert_close(g32.double(), g64, atol=ATOL_F32, rtol=RTOL_F32)
    # bf16 inputs are upcast: the loss is float32 and the gradient flows back in bf16
    x = lp.bfloat16().requires_grad_(True)
    Lb, _ = get_objective(name)(x, old.bfloat16(), adv.bfloat16(), mask, stats=stats, **kw)
    assert Lb.dtype == torch.float32
    aggregate(Lb, mask).backward()
    assert x.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("name", KNOWN_OBJECTIVES)
def test_metrics_are_documented_detached_scalars(name):
    lp, old, adv, mask = _batch(8)
    x = lp.clone().requires_grad_(True)
    L, metrics = get_objective(name)(x, old, adv, mask, generator=_gen(0))
    assert L.shape == lp.shape and L.requires_grad
    for k, v in metrics.items():
        assert k in METRIC_DESCRIPTIONS, k
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad, k


def test_ratio_guard():
    lp, old, adv, mask = _batch(9)
    for fn, key in ((clip_cov, "clip_ratio"), (kl_cov, "kl_ratio")):
        with pytest.raises(ValueError, match="fraction"):
            fn(lp, old, adv, mask, **{key: 0.2})
        fn(lp, old, adv, mask, **{key: 0.2}, allow_large_ratio=True)
        fn(lp, old, adv, mask, **{key: 0.05})
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            fn(lp, old, adv, mask, **{key: 2.0}, allow_large_ratio=True)
        with pytest.raises(ValueError):
            fn(lp, old, adv, mask, **{key: -1e-3})
    with pytest.raises(ValueError, match="fraction"):
        compute_cov_stats(lp, old, adv, mask, objective="kl_cov", kl_ratio=0.2)
    with pytest.raises(ValueError, match="takes no hyperparameter.*clip_cov_ratio"):
        compute_cov_stats(lp, old, adv, mask, objective="clip_cov", clip_cov_ratio=2e-4)
    with pytest.raises(ValueError, match="known objectives"):
        compute_cov_stats(lp, old, adv, mask, objective="clipcov")


def test_input_validation():
    lp, old, adv, mask = _batch(10)
    with pytest.raises(ValueError, match="shape"):
        ppo_clip(lp, old[:, :-1], adv, mask)
    with pytest.raises(ValueError, match="floating"):
        ppo_clip(lp, old, adv.long(), mask)
    bad = lp.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        kl_cov(bad, old, adv, mask)
    with pytest.raises(ValueError, match="cov_lb"):
        clip_cov(lp, old, adv, mask, cov_lb=5.0, cov_ub=1.0)
    with pytest.raises(ValueError, match="eps_low"):
        ppo_clip(lp, old, adv, mask, eps_low=1.5)
    with pytest.raises(ValueError, match="CovStats"):
        clip_cov(lp, old, adv, mask, stats={"selected": mask})
    with pytest.raises(ValueError, match="stats.selected"):
        clip_cov(lp, old, adv, mask, stats=CovStats(selected=mask[:1]))


def test_registry():
    assert set(KNOWN_OBJECTIVES) <= set(OBJECTIVES)
    assert get_objective(ObjectiveName.KL_COV) is kl_cov and get_objective("clip_cov") is clip_cov
    with pytest.raises(ValueError, match="known objectives: .*clip_cov.*kl_cov"):
        get_objective("clip-cov")
    with pytest.raises(ValueError, match="already registered"):
        register_objective("ppo_clip", vanilla_pg)
    try:
        @register_objective("_test_dummy")
        def dummy(log_prob, old_log_prob, advantages, mask, *, generator=None, stats=None):
            return vanilla_pg(log_prob, old_log_prob, advantages, mask)
        assert get_objective("_test_dummy") is dummy
        register_objective("_test_dummy", vanilla_pg, overwrite=True)
        assert get_objective("_test_dummy") is vanilla_pg
    finally:
        OBJECTIVES.pop("_test_dummy", None)


# ---------------------------------------------------------------------------------------- validation

#: (objective, bad hyperparameters, what the message must say: the value and the valid range)
_BAD_PARAMS = [
    ("ppo_clip", {"eps_low": -0.1}, r"eps_low=-0.1 is outside its valid range \[0, 1\]"),
    ("ppo_clip", {"eps_low": 1.5}, r"eps_low=1.5 is outside its valid range \[0, 1\]"),
    ("clip_higher", {"eps_high": -0.01}, r"eps_high=-0.01 is outside its valid range \[0, inf\)"),
    ("clip_higher", {"eps_high": float("nan")}, "eps_high must be finite"),
    ("clip_cov", {"clip_ratio": 0.5}, r"clip_ratio=0.5 selects 50% .*valid range is \[0, 0.05\].*fraction"),
    ("clip_cov", {"clip_ratio": 20.0, "allow_large_ratio": True},
     r"clip_ratio=20 is outside its valid range \[0, 1\] \(a fraction of tokens, not a percent\)"),
    ("clip_cov", {"clip_ratio": -2e-4}, r"clip_ratio=-0.0002 is outside its valid range \[0, 1\]"),
    ("clip_cov", {"cov_lb": 5.0, "cov_ub": 1.0}, r"cov_lb=5 must be < cov_ub=1"),
    ("clip_cov", {"cov_ub": float("nan")}, "cov_ub must not be NaN"),
    ("clip_cov", {"cov_lb": None}, "cov_lb must be a real number, got None"),
    ("clip_cov", {"eps_low": 2.0}, r"eps_low=2 is outside its valid range \[0, 1\]"),
    ("kl_cov", {"kl_ratio": 2.0}, r"kl_ratio=2 is outside its valid range \[0, 1\]"),
    ("kl_cov", {"kl_ratio": 0.2}, r"kl_ratio=0.2 selects 20% .*\[0, 0.05\]"),
    ("kl_cov", {"kl_coef": -1.0}, r"kl_coef=-1 is outside its valid range \[0, inf\)"),
    ("kl_cov", {"kl_coef": float("inf")}, "kl_coef must be finite"),
    ("kl_cov", {"allow_large_ratio": "yes"}, "allow_large_ratio='yes' must be True or False"),
    ("kl_cov", {"clip_ratio": 2e-4},
     r"takes no hyperparameter\(s\) \['clip_ratio'\].*accepts: kl_ratio, kl_coef"),
    ("vanilla_pg", {"eps_low": 0.2}, r"'vanilla_pg' takes no hyperparameter\(s\) \['eps_low'\]"),
]


@pytest.mark.parametrize("name,params,match", _BAD_PARAMS)
def test_validation_rejects_bad_values_naming_value_and_range(name, params, match):
    """One check: validate_objective_params, the objective itself and compute_cov_stats agree."""
    with pytest.raises(ValueError, match=match):
        validate_objective_params(name, params)
    lp, old, adv, mask = _batch(0, B=2, T=8)
    with pytest.raises((ValueError, TypeError)):  # an unknown keyword is Python's TypeError at the call
        get_objective(name)(lp, old, adv, mask, **params)
    with pytest.raises(ValueError, match=match):
        compute_cov_stats(lp, old, adv, mask, objective=name, **params)


def test_validation_returns_checked_values_with_defaults():
    want = {"kl_ratio": 2e-3, "kl_coef": 1.0, "allow_large_ratio": False}
    assert validate_objective_params("kl_cov", {}) == want
    assert validate_objective_params(ObjectiveName.CLIP_HIGHER, {"eps_low": 0}) == {"eps_low": 0.0,
                                                                                  "eps_high": 0.28}
    got = validate_objective_params("clip_cov", {"clip_ratio": 0.5, "allow_large_ratio": True,
                                                 "cov_ub": math.inf})
    assert got["clip_ratio"] == 0.5 and got["cov_ub"] == math.inf and got["eps_low"] == 0.2
    assert validate_objective_params("kl_cov", {"kl_ratio": torch.tensor(0.5**10)})["kl_ratio"] == 0.5**10
    with pytest.raises(ValueError, match="known objectives: .*kl_cov"):
        validate_objective_params("klcov", {})
    with pytest.raises(ValueError, match="must be a dict"):
        validate_objective_params("kl_cov", [("kl_ratio", 0.1)])


def test_registry_entries_carry_params_metrics_and_selection_hook():
    for name in KNOWN_OBJECTIVES:
        spec = objective_spec(name)
        assert spec.fn is get_objective(name) and OBJECTIVES[name] is spec
        lp, old, adv, mask = _batch(1)
        _, metrics = spec.fn(lp, old, adv, mask, generator=_gen(0), **_COV_KW_SMALL.get(name, {}))
        assert list(metrics) == list(spec.metrics)
        assert all(spec.metrics[k] == METRIC_DESCRIPTIONS[k] for k in metrics)
    assert objective_spec("clip_cov").params["clip_ratio"].default == 2e-4
    assert {n for n in KNOWN_OBJECTIVES if objective_spec(n).select is not None} == {"clip_cov", "kl_cov"}


def test_compute_cov_stats_uses_the_registered_hook_not_the_name():
    """A custom objective with a selection hook gets whole-batch statistics with no change elsewhere."""
    lp, old, adv, mask = _batch(2)
    try:
        def fn(*args, kl_ratio=2e-2, generator=None, stats=None, **others):
            raise NotImplementedError

        register_objective("_test_kl_cov_alias", fn, select=objective_spec("kl_cov").select)
        got = compute_cov_stats(lp, old, adv, mask, objective="_test_kl_cov_alias", kl_ratio=2e-2)
        want = compute_cov_stats(lp, old, adv, mask, objective="kl_cov", kl_ratio=2e-2)
        assert torch.equal(got.selected, want.selected) and int(got.selected.sum()) > 1
    finally:
        OBJECTIVES.pop("_test_kl_cov_alias", None)


@pytest.mark.parametrize("name,params,match", [c for c in _BAD_PARAMS if c[0] != "vanilla_pg"])
def test_configs_reject_bad_values_when_built(name, params, match):
    """The simulators' SimConfig and the trainer's ObjectiveConfig run the same check on construction."""
    from llm_rl.config import ObjectiveConfig
    from simulators.config import SimConfig

    with pytest.raises(ValueError, match=match):
        SimConfig(rule="grpo", objective=name, objective_kwargs=params)
    with pytest.raises(ValueError, match=match):
        ObjectiveConfig(name=name, params=params)
    SimConfig(rule="pg", objective=name, objective_kwargs=params)  # ignored by rules other than grpo
    with pytest.raises(ValueError, match=r"takes no hyperparameter.*accepts: eps_low, eps_high"):
        ObjectiveConfig(name="grpo", params={"kl_ratio": 2e-3})  # the alias resolves to ppo_clip


def test_no_other_signature_inspection_validates_hyperparameters():
    """Only the registry reads an objective's signature (once, at registration)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    lines = [f"{p.relative_to(root)}: {line.strip()}" for pkg in ("theory", "simulators", "llm_rl", "cli")
             for p in (root / pkg).rglob("*.py") for line in p.read_text(encoding="utf-8").splitlines()
             if "inspect.signature(" in line and "objective" in line]
    assert lines == []


# ---------------------------------------------------------------------------------------- additive terms


def test_entropy_bonus():
    H = torch.rand(3, 5, dtype=torch.float64)
    mask = torch.rand(3, 5) < 0.7
    mat, metrics = entropy_bonus(H, mask, coef=0.01)
    torch.testing.assert_close(mat, torch.where(mask, -0.01 * H, 0.0))
    assert float(metrics["objective/entropy"]) == pytest.approx(float(H[mask].mean()))
    # adding before aggregating == verl's agg(L) − α·agg(H) with the same mode
    lp, old, adv, _ = _batch(0, B=3, T=5)
    L, _ = ppo_clip(lp, old, adv, mask)
    for mode in AGG_MODES:
        assert float(aggregate(L + mat, mask, mode)) == pytest.approx(
            float(aggregate(L, mask, mode) - 0.01 * aggregate(H, mask, mode)), rel=EXACT_F64)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_reference_kl_estimators(estimator):
    """On a categorical π, E_π[k1] = E_π[k3] = KL(π ‖ π_ref) exactly; k2 is ½ E[δ²]; masked → 0."""
    g = _gen(0)
    z = torch.randn(7, generator=g, dtype=torch.float64)
    z_ref = torch.randn(7, generator=g, dtype=torch.float64)
    lp, lref = torch.log_softmax(z, -1), torch.log_softmax(z_ref, -1)
    mat, metrics = reference_kl(lp[None], lref[None], torch.ones(1, 7, dtype=torch.bool), coef=2.0,
                                estimator=estimator)
    expect = float((lp.exp() * mat[0] / 2.0).sum())
    kl = float(categorical_kl(z, z_ref))
    if estimator == "k2":
        assert expect == pytest.approx(0.5 * float((lp.exp() * (lp - lref) ** 2).sum()), rel=EXACT_F64)
    else:
        assert expect == pytest.approx(kl, rel=EXACT_F64)
    assert f"objective/ref_kl_{estimator}" in metrics
    m = torch.tensor([[True, False, True, True, False, True, True]])
    mat_m, _ = reference_kl(lp[None], lref[None], m, coef=1.0, estimator=estimator)
    assert torch.all(mat_m[~m] == 0)
    with pytest.raises(ValueError, match="k1, k2, k3"):
        reference_kl(lp[None], lref[None], m, coef=1.0, estimator="k4")


def test_reference_kl_k2_gradient_is_kl_gradient():
    """Score-function check: Σ_a π_a ∇k2(a) (samples held fixed) = ∇_z KL(π_z ‖ π_ref)."""
    g = _gen(1)
    z = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    z_ref = torch.randn(5, generator=g, dtype=torch.float64)
    lp = torch.log_softmax(z, -1)
    mat, _ = reference_kl(lp[None], torch.log_softmax(z_ref, -1)[None], torch.ones(1, 5, dtype=torch.bool),
                          coef=1.0, estimator="k2")
    (grad_est,) = torch.autograd.grad((lp.exp().detach() * mat[0]).sum(), z)
    (grad_kl,) = torch.autograd.grad(categorical_kl(z, z_ref), z)
    torch.testing.assert_close(grad_est, grad_kl, atol=EXACT_F64, rtol=RTOL_F64)


# ---------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("name", KNOWN_OBJECTIVES)
def test_no_host_sync_on_cuda(name):
    """Every objective, the stats helper and aggregate run with CUDA sync debugging set to error."""
    lp, old, adv, mask = (t.cuda() for t in _batch(11, B=8, T=256, dtype=torch.float32))
    g = torch.Generator(device="cuda").manual_seed(0)
    kw = _COV_KW_SMALL.get(name, {})
    x = lp.clone().requires_grad_(True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = compute_cov_stats(x, old, adv, mask, objective=name, generator=g, **kw)
        L, metrics = get_objective(name)(x, old, adv, mask, generator=g, **kw)
        Ls, _ = get_objective(name)(x[:4], old[:4], adv[:4], mask[:4], stats=stats.rows(slice(0, 4)), **kw)
        counts = global_counts(mask)
        for mode in AGG_MODES:
            aggregate(L, mask, mode)
        loss = aggregate(Ls, mask[:4], "token-mean", global_token_count=counts["global_token_count"])
        loss.backward()
        with pytest.raises(RuntimeError):                    # positive control: the detector is live
            loss.item()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    rows = vars(stats.rows(slice(0, 4)))
    cpu_stats = CovStats(**{k: (None if v is None else v.cpu()) for k, v in rows.items()})
    cpu = [t[:4].cpu() for t in (lp, old, adv, mask)]
    L_cpu, _ = get_objective(name)(*cpu, stats=cpu_stats, **kw)
    torch.testing.assert_close(Ls.detach().cpu(), L_cpu, atol=ATOL_F32, rtol=RTOL_F32)
    assert L.shape == lp.shape and set(metrics) <= set(METRIC_DESCRIPTIONS)
