"""API contract of `theory`: masking, broadcasting, dtypes, extreme logits, clear errors."""

import pytest
import torch

import theory as T
from tolerances import ATOL_F32, ATOL_F64, RTOL_F32

F64, F32 = torch.float64, torch.float32
NEG_INF = float("-inf")


def _case(seed=0, shape=(3, 7), dtype=F64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=F64) * 2
    d = torch.randn(shape, generator=g, dtype=F64) * 0.3
    return z.to(dtype), d.to(dtype)


STEP_FNS = {
    "entropy_change": T.entropy_change,
    "first_order": T.first_order_entropy_change,
    "second_order": T.second_order_entropy_change,
    "bound": T.first_order_error_bound,
    "pg": lambda z, a: T.predicted_entropy_change(z, a, 0.5, "pg"),
    "npg": lambda z, a: T.predicted_entropy_change(z, a, 0.5, "npg"),
    "expected_sampled": lambda z, a: T.expected_sampled_entropy_change(z, a, 0.5),
}


@pytest.mark.parametrize("name", sorted(STEP_FNS))
def test_masked_actions_behave_as_absent_actions(name):
    fn = STEP_FNS[name]
    z, d = _case()
    zm = torch.cat([z, torch.full((3, 2), NEG_INF, dtype=F64)], -1)
    dm = torch.cat([d, torch.tensor([[5.0, float("1e6")]] * 3, dtype=F64)], -1)  # junk at masked slots
    out_masked, out_small = fn(zm, dm), fn(z, d)
    assert torch.isfinite(out_masked).all()
    assert torch.allclose(out_masked, out_small, atol=ATOL_F64)


def test_masked_entropy_gradient_and_steps_are_zero_there():
    z, d = _case()
    z[:, 0] = NEG_INF
    for out in (T.entropy_gradient(z), T.pg_logit_step(z, d, 1.0), T.npg_logit_step(z, d, 1.0)):
        assert torch.isfinite(out).all() and (out[:, 0] == 0).all()
    assert torch.allclose(T.entropy(z), T.entropy(z[:, 1:]), atol=ATOL_F64)


@pytest.mark.parametrize("name", sorted(STEP_FNS))
def test_batch_dims_broadcast(name):
    fn = STEP_FNS[name]
    z, d = _case(shape=(2, 3, 5))
    batched = fn(z, d)
    assert batched.shape == (2, 3)
    loop = torch.stack([torch.stack([fn(z[i, j], d[i, j]) for j in range(3)]) for i in range(2)])
    assert torch.allclose(batched, loop, atol=ATOL_F64)
    # a single direction broadcast over a batch of states
    assert torch.allclose(fn(z, d[0, 0]), fn(z, d[0, 0].expand_as(z)), atol=ATOL_F64)


@pytest.mark.parametrize("name", sorted(STEP_FNS))
def test_float32_agrees_with_float64(name):
    fn = STEP_FNS[name]
    z, d = _case()
    out32 = fn(z.to(F32), d.to(F32))
    assert out32.dtype == F32
    ref = fn(z, d)
    assert torch.allclose(out32.double(), ref, atol=ATOL_F32, rtol=RTOL_F32)


def test_extreme_logits_stay_finite():
    z = torch.tensor([[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4, -1e4, -1e4 + 3]], dtype=F32)
    d = torch.tensor([[0.1, -0.2, 0.3, 0.0]] * 2, dtype=F32)
    outs = [T.entropy(z), T.entropy_gradient(z), T.log_policy(z)] + [fn(z, d) for fn in STEP_FNS.values()]
    for out in outs:
        assert torch.isfinite(out).all()
    assert abs(T.entropy(z)[1].item() - T.entropy(torch.tensor([0.0, 0, 0, 3])).item()) < ATOL_F32


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[0.0, float("nan")]]), "NaN"),
    (torch.tensor([[0.0, float("inf")]]), r"\+inf"),
    (torch.tensor([[NEG_INF, NEG_INF]]), "every action is masked"),
    (torch.tensor([1, 2]), "floating"),
    (torch.tensor(1.0), "at least 1"),
])
def test_invalid_logits_raise_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        T.entropy(bad)


def test_shape_mismatch_and_bad_arguments_raise_value_error():
    z, d = _case()
    with pytest.raises(ValueError, match="does not broadcast"):
        T.first_order_entropy_change(z, d[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        T.entropy_change(z, d * float("nan"))
    with pytest.raises(ValueError, match="rule"):
        T.predicted_entropy_change(z, d, 0.1, "adam")
    with pytest.raises(ValueError, match="lr"):
        T.pg_logit_step(z, d, float("nan"))
    with pytest.raises(ValueError, match="actions must lie"):
        T.sampled_logit_step(z, torch.tensor([[0], [7], [1]]), torch.ones(3, 1, dtype=F64), 0.1)
    with pytest.raises(ValueError, match="masked"):
        zm = z.clone()
        zm[:, 2] = NEG_INF
        T.sample_entropy_contribution(zm, torch.tensor([[2], [0], [1]]), torch.ones(3, 1, dtype=F64), 0.1)
    with pytest.raises(ValueError, match="shape"):
        T.token_covariance(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask"):
        T.token_covariance(torch.zeros(2, 3), torch.zeros(2, 3), torch.full((2, 3), 2.0))


def test_entropy_step_report_equals_the_separate_functions():
    z, d = _case(shape=(4, 3, 9))
    z[0, 0, :2] = NEG_INF
    rep = T.entropy_step_report(z, d)
    ref = {"entropy": T.entropy(z), "exact": T.entropy_change(z, d),
           "first_order": T.first_order_entropy_change(z, d),
           "second_order": T.second_order_entropy_change(z, d), "bound": T.first_order_error_bound(z, d)}
    assert rep.keys() == ref.keys()
    for k in ref:
        assert torch.allclose(rep[k], ref[k], atol=ATOL_F64, rtol=0), k
