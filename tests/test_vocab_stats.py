"""The chunked vocabulary pass equals the naive float64 formulas."""

import pytest
import torch

import theory as T
from theory.vocab_stats import vocab_stats, vocab_stats_reference
from tolerances import ATOL_F32, ATOL_F64


def _case(rows=37, vocab=501, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, vocab, generator=g) * 4
    z[3, 10:] = float("-inf")  # a masked row tail
    d = torch.randn(rows, vocab, generator=g) * 0.05
    return z.to(dtype), d.to(dtype)


@pytest.mark.parametrize("chunk", [1, 5, 37, 100])
def test_chunked_equals_reference_float64(chunk):
    z, d = _case(dtype=torch.float64)
    got, ref = vocab_stats(z, d, chunk_rows=chunk), vocab_stats_reference(z, d)
    for k in ref:
        assert torch.allclose(got[k], ref[k], atol=ATOL_F64, rtol=0), k


def test_float32_and_bfloat16_inputs_agree_with_reference():
    z, d = _case()
    ref = vocab_stats_reference(z, d)
    got = vocab_stats(z, d, chunk_rows=8)
    for k in ref:
        assert torch.allclose(got[k].double(), ref[k], atol=ATOL_F32, rtol=ATOL_F32), k
    zb = z.to(torch.bfloat16)
    got_b, ref_b = vocab_stats(zb, chunk_rows=8), vocab_stats_reference(zb)
    for k in ref_b:  # same bf16 values, computed in float32
        assert torch.allclose(got_b[k].double(), ref_b[k], atol=ATOL_F32, rtol=ATOL_F32), k


def test_matches_theory_entropy_and_lemma1():
    z, d = _case(dtype=torch.float64)
    got = vocab_stats(z, d, chunk_rows=4)
    assert torch.allclose(got["entropy"], T.entropy(z), atol=ATOL_F64)
    assert torch.allclose(got["first_order"], T.first_order_entropy_change(z, d), atol=ATOL_F64)


def test_bad_inputs_raise():
    z, d = _case()
    with pytest.raises(ValueError, match="rows, V"):
        vocab_stats(z[None])
    with pytest.raises(ValueError, match="shape"):
        vocab_stats(z, d[:, :5])
    with pytest.raises(ValueError, match="finite entry"):
        vocab_stats(torch.full((2, 3), float("-inf")))
