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
    with pytest.raises(ValueError, match="vocab_tiles"):
        vocab_stats(z, vocab_tiles=0)


@pytest.mark.parametrize("tiles", [1, 2, 3, 7])
def test_vocab_tiles_equal_reference(tiles):
    z, d = _case(dtype=torch.float64)
    got, ref = vocab_stats(z, d, chunk_rows=6, vocab_tiles=tiles), vocab_stats_reference(z, d)
    for k in ref:
        assert torch.allclose(got[k], ref[k], atol=ATOL_F64, rtol=0), (k, tiles)


def test_float32_common_shift_of_delta_is_harmless():
    """Softmax ignores a common shift of δ, so ΔH predictions must too — in float32, where forming
    products with an offset of 1e3 before centring would lose ~4 digits."""
    z, d = _case()
    ref = vocab_stats_reference(z, d)
    got = vocab_stats(z, d + 1e3, chunk_rows=8)
    for k in ("first_order", "second_order"):
        assert torch.allclose(got[k].double(), ref[k], atol=ATOL_F32, rtol=ATOL_F32), k


def test_input_is_not_modified_and_non_finite_rows_are_named():
    z, d = _case()
    z0, d0 = z.clone(), d.clone()
    vocab_stats(z, d, chunk_rows=4)
    assert torch.equal(z, z0) and torch.equal(d, d0)
    z[5, 7] = float("nan")
    with pytest.raises(ValueError, match="logits contains NaN"):
        vocab_stats(z)
    with pytest.raises(ValueError, match="delta contains inf"):
        vocab_stats(z0, d0.index_fill(1, torch.tensor([3]), float("inf")))


def _peak_extra_bytes(fn):
    """The benchmark's own allocator-level measurement (benchmarks/diagnostics_cost.py), on CPU."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "diagnostics_cost.py"
    spec = importlib.util.spec_from_file_location("diagnostics_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.peak_extra_bytes(fn, "cpu")


def test_peak_extra_memory_is_bounded_by_two_chunks():
    """The issue's memory target: at most two [chunk_rows, V] float32 buffers, whatever the row count."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 4096, generator=g).bfloat16()
    d = (torch.randn(64, 4096, generator=g) * 1e-3).bfloat16()
    chunk = 4
    peak = _peak_extra_bytes(lambda: vocab_stats(z, d, chunk_rows=chunk))
    assert peak <= 2 * chunk * 4096 * 4
    naive = _peak_extra_bytes(lambda: vocab_stats_reference(z, d))
    assert naive > 8 * peak  # the unchunked float64 formulas hold many [rows, V] copies


@pytest.mark.slow
def test_compiled_pass_equals_reference():
    z, d = _case()
    ref = vocab_stats_reference(z, d)
    got = vocab_stats(z, d, chunk_rows=8, compiled=True)  # 37 rows: exercises the padded tail chunk
    for k in ref:
        assert torch.allclose(got[k].double(), ref[k], atol=ATOL_F32, rtol=ATOL_F32), k


@pytest.mark.gpu
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_pass_equals_reference(compiled):
    z, d = _case()
    ref = vocab_stats_reference(z, d)
    got = vocab_stats(z.cuda(), d.cuda(), chunk_rows=8, compiled=compiled)
    for k in ref:
        assert torch.allclose(got[k].double().cpu(), ref[k], atol=ATOL_F32, rtol=ATOL_F32), k
