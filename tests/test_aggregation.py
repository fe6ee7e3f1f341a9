"""theory.aggregation: the four verl agg_loss modes against a naive float64 loop, masking, and
micro-batch invariance with whole-batch denominators (docs/ecosystem.md §1.8)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tolerances import ATOL_F32, EXACT_F64, RTOL_F32
from theory.aggregation import (AGG_MODES, AggMode, aggregate, global_counts, global_denominator, masked_mean,
                                masked_sum)


def _batch(seed: int, B: int, T: int, p_mask: float, dtype=torch.float64, empty_row: bool = False):
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(B, T, generator=g, dtype=torch.float64).to(dtype)
    M = torch.rand(B, T, generator=g) < p_mask
    if empty_row:
        M[0] = False
    return L, M


def _naive(L, M, mode, n_tok=None, n_seq=None, c=None):
    """Plain Python loops in float64: the definition in the module docstring."""
    B, T = L.shape
    rows = [[(float(L[b, t]), bool(M[b, t])) for t in range(T)] for b in range(B)]
    tok_sum = sum(v for r in rows for v, m in r if m)
    n_valid = sum(m for r in rows for _, m in r)
    nonempty = [r for r in rows if any(m for _, m in r)]
    if mode == "token-mean":
        return tok_sum / (n_tok if n_tok is not None else max(n_valid, 1))
    if mode == "seq-mean-token-sum-norm":
        return tok_sum / (c if c is not None else T)
    if mode == "seq-mean-token-sum":
        per_seq = [sum(v for v, m in r if m) for r in nonempty]
    else:
        per_seq = [sum(v for v, m in r if m) / sum(m for _, m in r) for r in nonempty]
    return sum(per_seq) / (n_seq if n_seq is not None else max(len(nonempty), 1))


shapes = st.tuples(st.integers(1, 6), st.integers(1, 9))


@given(shape=shapes, seed=st.integers(0, 2**31 - 1), p=st.sampled_from([0.0, 0.3, 0.8, 1.0]),
       empty_row=st.booleans())
@pytest.mark.parametrize("mode", AGG_MODES)
def test_every_mode_matches_naive_loop(mode, shape, seed, p, empty_row):
    L, M = _batch(seed, *shape, p, empty_row=empty_row)
    got = aggregate(L, M, mode)
    assert got.dim() == 0 and got.dtype == torch.float64
    assert math.isclose(float(got), _naive(L, M, mode), rel_tol=EXACT_F64, abs_tol=EXACT_F64)


@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
@pytest.mark.parametrize("mode", AGG_MODES)
def test_float32_matches_float64(mode, shape, seed):
    L, M = _batch(seed, *shape, 0.7)
    got32 = aggregate(L.float(), M, mode)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), aggregate(L, M, mode), atol=ATOL_F32, rtol=RTOL_F32)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_masked_tokens_contribute_nothing(mode):
    L, M = _batch(3, 4, 7, 0.6)
    garbage = L.clone()
    garbage[~M] = 1e30
    garbage.requires_grad_(True)
    out = aggregate(garbage, M.to(torch.float64), mode)       # 0/1 float mask accepted too
    assert float(out.detach()) == pytest.approx(float(aggregate(L, M, mode)), rel=EXACT_F64, abs=EXACT_F64)
    out.backward()
    assert torch.all(garbage.grad[~M] == 0)


@given(B=st.integers(2, 8), T=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
       n_chunks=st.integers(1, 4), p=st.sampled_from([0.4, 0.9]))
@pytest.mark.parametrize("mode", AGG_MODES)
def test_microbatches_with_global_denominators_sum_to_whole(mode, B, T, seed, n_chunks, p):
    L, M = _batch(seed, B, T, p)
    kw = global_denominator(M, mode)
    Lw = L.clone().requires_grad_(True)
    whole = aggregate(Lw, M, mode)
    whole.backward()
    Lp = L.clone().requires_grad_(True)
    total = sum(aggregate(Lp[idx], M[idx], mode, **kw) for idx in torch.arange(B).chunk(n_chunks))
    total.backward()
    assert math.isclose(float(total.detach()), float(whole.detach()), rel_tol=EXACT_F64, abs_tol=EXACT_F64)
    torch.testing.assert_close(Lp.grad, Lw.grad, atol=EXACT_F64, rtol=EXACT_F64)


@given(shape=shapes, seed=st.integers(0, 2**31 - 1), p=st.sampled_from([0.0, 0.3, 0.8, 1.0]),
       empty_row=st.booleans())
@pytest.mark.parametrize("mode", AGG_MODES)
def test_global_denominator_matches_naive_formula(mode, shape, seed, p, empty_row):
    _, M = _batch(seed, *shape, p, empty_row=empty_row)
    B, T = shape
    n_valid = sum(bool(M[b, t]) for b in range(B) for t in range(T))
    n_nonempty = sum(any(bool(M[b, t]) for t in range(T)) for b in range(B))
    name, value = {
        "token-mean": ("global_token_count", max(n_valid, 1)),
        "seq-mean-token-mean": ("global_seq_count", max(n_nonempty, 1)),
        "seq-mean-token-sum": ("global_seq_count", max(n_nonempty, 1)),
        "seq-mean-token-sum-norm": ("norm_constant", T),
    }[mode]
    got = global_denominator(M.long(), mode)
    assert list(got) == [name] and float(got[name]) == value
    fixed = global_denominator(M, mode, norm_constant=B * 7.0)
    if mode == "seq-mean-token-sum-norm":
        assert fixed == {"norm_constant": B * 7.0}
    else:
        assert list(fixed) == [name] and float(fixed[name]) == value  # the constant is for the norm mode only


def test_global_denominator_errors():
    M = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="token-mean"):
        global_denominator(M, "token-sum")
    with pytest.raises(ValueError, match="> 0"):
        global_denominator(M, "seq-mean-token-sum-norm", norm_constant=0.0)
    with pytest.raises(ValueError, match="token axis"):
        global_denominator(torch.tensor(True), "token-mean")


def test_local_denominators_are_not_split_invariant():
    """Why the global denominators exist: per-micro-batch token means, averaged, differ in general."""
    L = torch.tensor([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]], dtype=torch.float64)
    M = torch.tensor([[True, True, True], [True, False, False]])
    whole = aggregate(L, M, "token-mean")                        # (3 + 4) / 4
    split = (aggregate(L[:1], M[:1], "token-mean") + aggregate(L[1:], M[1:], "token-mean")) / 2
    assert float(whole) == pytest.approx(7 / 4) and float(split) == pytest.approx(2.5)


def test_global_counts_and_masked_reductions():
    M = torch.tensor([[1, 1, 0], [0, 0, 0], [0, 1, 0]])
    c = global_counts(M)
    assert int(c["global_token_count"]) == 3 and int(c["global_seq_count"]) == 2
    x = torch.tensor([[1.0, 2.0, 100.0], [5.0, 5.0, 5.0], [7.0, 3.0, -1.0]])
    assert float(masked_sum(x, M)) == 6.0
    assert float(masked_mean(x, M)) == 2.0
    torch.testing.assert_close(masked_mean(x, M, dim=-1), torch.tensor([1.5, 0.0, 3.0]))
    torch.testing.assert_close(masked_sum(x, M, dim=0), torch.tensor([1.0, 5.0, 0.0]))
    assert float(masked_mean(x, torch.zeros_like(M))) == 0.0


def test_seq_mean_token_sum_norm_constant_and_enum():
    L, M = _batch(0, 3, 5, 0.7)
    assert float(aggregate(L, M, AggMode.SEQ_MEAN_TOKEN_SUM_NORM, norm_constant=40.0)) == pytest.approx(
        _naive(L, M, "seq-mean-token-sum-norm", c=40.0))


def test_errors():
    L, M = _batch(0, 2, 3, 0.7)
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(L, M, "token-sum")
    with pytest.raises(ValueError, match="does not apply"):
        aggregate(L, M, "token-mean", global_seq_count=3)
    with pytest.raises(ValueError, match="> 0"):
        aggregate(L, M, "token-mean", global_token_count=0)
    with pytest.raises(ValueError, match="shape"):
        aggregate(L, M[:, :2], "token-mean")
    with pytest.raises(ValueError, match="floating"):
        aggregate(L.long(), M, "token-mean")
    with pytest.raises(ValueError, match="NaN"):
        aggregate(torch.full_like(L, float("nan")), M, "token-mean")
    with pytest.raises(ValueError, match="0 and 1"):
        aggregate(L, M.double() * 2, "token-mean")
