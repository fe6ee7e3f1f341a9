"""The Eq. 10 batch covariance: estimator bias, target, pooling (docs/theory.md §4 statements 18-19)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import theory as T
from tolerances import ATOL_F64, MC_SIGMAS

F64 = torch.float64


def _mc_token_cov(z, adv, n_samples, reps, gen):
    """Monte-Carlo mean of the per-token Eq. 10 products over `reps` batches of N on-policy samples."""
    pi = torch.softmax(z, -1)
    actions = torch.multinomial(pi.expand(reps, -1), n_samples, replacement=True, generator=gen)  # [reps, N]
    lp = T.log_policy(z)[actions]
    a = adv[actions]
    mask = torch.ones_like(lp, dtype=torch.bool)
    per_batch = torch.stack([T.token_covariance(lp[i:i + 1], a[i:i + 1], mask[i:i + 1]).mean()
                             for i in range(reps)])
    return per_batch.mean().item(), per_batch.std().item() / reps**0.5


def test_18_token_covariance_is_biased_estimate_of_npg_covariance_not_pg():
    gen = torch.Generator().manual_seed(11)
    z = torch.tensor([2.0, 1.0, 0.0, -1.0, -3.0], dtype=F64)
    adv = torch.tensor([-1.0, 0.5, 1.0, 2.0, -2.0], dtype=F64)
    cov_npg = T.policy_covariance(z, T.log_policy(z), adv).item()
    pi = torch.softmax(z, -1)
    cov_pg = T.policy_covariance(z, T.log_policy(z), pi * (adv - (pi * adv).sum())).item()
    for n in (2, 4, 16):
        mean, se = _mc_token_cov(z, adv, n, 4000, gen)
        assert abs(mean - (n - 1) / n * cov_npg) < MC_SIGMAS * se, (n, mean, cov_npg)
        assert abs(mean - cov_pg) > 10 * se


def test_18b_masked_tokens_do_not_enter_the_means():
    lp = torch.tensor([[-1.0, -2.0, -7.0], [-0.5, -3.0, 99.0]], dtype=F64)
    adv = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 50.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    cov = T.token_covariance(lp, adv, mask)
    kept = mask.bool()
    lpm, am = lp[kept], adv[kept]
    ref = (lpm - lpm.mean()) * (am - am.mean())
    assert torch.allclose(cov[kept], ref, atol=ATOL_F64) and cov[1, 2] == 0


@given(st.integers(0, 2**31 - 1), st.integers(2, 6))
def test_19_pooled_covariance_is_within_plus_between(seed, n_states):
    g = torch.Generator().manual_seed(seed)
    n = 40
    ids = torch.randint(0, n_states, (n,), generator=g)
    lp = torch.randn(n, generator=g, dtype=F64)
    adv = torch.randn(n, generator=g, dtype=F64)
    w = torch.rand(n, generator=g, dtype=F64)
    for weights in (None, w):
        out = T.covariance_decomposition(lp, adv, ids, weights)
        assert abs((out["pooled"] - out["within"] - out["between"]).item()) < ATOL_F64


def test_19b_every_state_raises_entropy_yet_pooled_score_is_positive():
    # two states; inside each, log π and A are anti-correlated (Cov < 0: every state's entropy would rise
    # under NPG), but the likely-token state carries the higher advantages, so the pooled score is > 0.
    lp = torch.tensor([-0.1, -0.3, -0.2, -4.0, -5.0, -4.5], dtype=F64)
    adv = torch.tensor([1.2, 1.6, 1.4, -1.5, -1.0, -1.2], dtype=F64)
    ids = torch.tensor([0, 0, 0, 1, 1, 1])
    out = T.covariance_decomposition(lp, adv, ids)
    assert (out["per_state"] < 0).all()
    assert out["within"] < 0 < out["pooled"]
    # the batch's own Eq. 10 score (what Clip-Cov ranks) agrees with the pooled value
    eq10 = T.token_covariance(lp[None], adv[None], torch.ones(1, 6, dtype=torch.bool)).mean()
    assert abs((eq10 - out["pooled"]).item()) < ATOL_F64


def _naive_response_cov(lp, mask, adv, groups, form):
    """Float64 loop reference of paper Eqs. 8-9: per prompt, population covariance of the length-normalised
    log-likelihood with pi(y|x) A (pg) or A (npg), then the mean over prompts."""
    ell = [sum(lp[i][t] for t in range(len(lp[i])) if mask[i][t]) / sum(mask[i]) for i in range(len(lp))]
    out = {}
    for g in sorted(set(groups)):
        idx = [i for i in range(len(lp)) if groups[i] == g]
        x = [ell[i] for i in idx]
        u = [(2.718281828459045 ** ell[i]) * adv[i] if form == "pg" else adv[i] for i in idx]
        mx, mu = sum(x) / len(x), sum(u) / len(u)
        out[g] = sum((a - mx) * (b - mu) for a, b in zip(x, u)) / len(x)
    return out


@pytest.mark.parametrize("form", ["pg", "npg"])
def test_response_covariance_matches_a_float64_loop(form):
    from theory.covariance import response_covariance

    g = torch.Generator().manual_seed(3)
    lp = -torch.rand(12, 6, generator=g, dtype=F64) * 3
    mask = torch.rand(12, 6, generator=g) < 0.7
    mask[:, 0] = True
    adv = torch.randn(12, generator=g, dtype=F64)
    groups = torch.tensor([5, 5, 5, 5, 1, 1, 1, 1, 9, 9, 9, 9])
    out = response_covariance(lp, mask, adv, groups, form)
    ref = _naive_response_cov(lp.tolist(), mask.tolist(), adv.tolist(), groups.tolist(), form)
    assert out["group_ids"].tolist() == [1, 5, 9]
    assert torch.allclose(out["per_group"], torch.tensor([ref[k] for k in (1, 5, 9)], dtype=F64), atol=1e-12)
    assert float(out["batch_mean"]) == pytest.approx(sum(ref.values()) / 3, abs=1e-12)
    # a masked token's value does not matter; a flipped advantage flips the covariance
    junk = torch.where(mask, lp, torch.full_like(lp, 7.0))
    assert torch.allclose(response_covariance(junk, mask, adv, groups, form)["per_group"], out["per_group"])
    if form == "npg":
        flipped = response_covariance(lp, mask, -adv, groups, form)["per_group"]
        assert torch.allclose(flipped, -out["per_group"], atol=1e-12)


def test_response_covariance_rejects_bad_inputs():
    from theory.covariance import response_covariance

    lp, mask = torch.zeros(4, 3, dtype=F64), torch.ones(4, 3, dtype=torch.bool)
    adv, groups = torch.zeros(4, dtype=F64), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="form"):
        response_covariance(lp, mask, adv, groups, "token")
    with pytest.raises(ValueError, match="advantages must have shape"):
        response_covariance(lp, mask, torch.zeros(4, 3, dtype=F64), groups)
    with pytest.raises(ValueError, match="group_ids must be an integer"):
        response_covariance(lp, mask, adv, groups.double())
    bad = mask.clone()
    bad[2] = False
    with pytest.raises(ValueError, match="at least one unmasked"):
        response_covariance(lp, bad, adv, groups)
    with pytest.raises(ValueError, match="NaN"):
        response_covariance(torch.full((4, 3), float("nan"), dtype=F64), mask, adv, groups)
