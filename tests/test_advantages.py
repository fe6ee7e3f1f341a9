"""theory.advantages: GRPO / Dr. GRPO group advantages against a loop oracle, and the one
implementation both worlds (simulators, llm_rl) use."""

import ast
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tolerances import EXACT_F64
from theory.advantages import ADVANTAGE_ESTIMATORS, group_advantages, zero_variance_groups

ROOT = Path(__file__).resolve().parents[1]


def _oracle(rewards, n, estimator, eps=1e-6):
    """Plain-Python loops: per group mean and unbiased std (n − 1 in the denominator, as verl)."""
    flat = rewards.reshape(-1, rewards.shape[-1]).tolist()
    out = []
    for row in flat:
        adv = []
        for g in range(0, len(row), n):
            grp = row[g:g + n]
            mean = sum(grp) / n
            std = math.sqrt(sum((r - mean) ** 2 for r in grp) / (n - 1))
            adv += [(r - mean) / (std + eps) if estimator == "grpo" else r - mean for r in grp]
        out.append(adv)
    return torch.tensor(out, dtype=torch.float64).reshape(rewards.shape)


@given(seed=st.integers(0, 2**31 - 1), lead=st.sampled_from([(), (3,), (2, 2)]), n=st.integers(2, 5),
       groups=st.integers(1, 4), estimator=st.sampled_from(ADVANTAGE_ESTIMATORS),
       binary=st.booleans())
def test_group_advantages_match_loop_oracle(seed, lead, n, groups, estimator, binary):
    g = torch.Generator().manual_seed(seed)
    shape = (*lead, groups * n)
    r = (torch.rand(shape, generator=g, dtype=torch.float64) < 0.5).double() if binary else \
        torch.randn(shape, generator=g, dtype=torch.float64)
    got = group_advantages(r, n, estimator)
    assert got.shape == r.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, _oracle(r, n, estimator), atol=EXACT_F64, rtol=EXACT_F64)
    want_zero = torch.tensor([[len(set(row[i:i + n])) == 1 for i in range(0, groups * n, n)]
                              for row in r.reshape(-1, groups * n).tolist()]).reshape(*lead, groups)
    assert torch.equal(zero_variance_groups(r, n), want_zero)
    assert torch.all(got.reshape(*lead, groups, n)[want_zero] == 0)


def test_group_advantages_dtype_and_errors():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert group_advantages(r, 2).dtype == torch.float32
    assert group_advantages(r.half(), 2).dtype == torch.float32
    with pytest.raises(ValueError, match="choose one of: grpo, drgrpo"):
        group_advantages(r, 2, "std")
    for bad in (1, 3, 2.0, True):
        with pytest.raises(ValueError, match="group_size"):
            group_advantages(r, bad)
    with pytest.raises(ValueError, match="group axis"):
        group_advantages(torch.tensor(1.0), 2)


def test_both_worlds_use_theory_advantages():
    """One implementation: llm_rl and simulators import theory.advantages; no other module defines one."""
    import llm_rl.config
    import llm_rl.trainer
    import simulators.config
    import simulators.rules
    from theory import advantages

    assert llm_rl.trainer.group_advantages is advantages.group_advantages
    assert llm_rl.trainer.zero_variance_groups is advantages.zero_variance_groups
    assert simulators.rules.group_advantages is advantages.group_advantages
    assert llm_rl.config.ADVANTAGE_ESTIMATORS is ADVANTAGE_ESTIMATORS
    assert simulators.config.ADVANTAGE_ESTIMATORS is ADVANTAGE_ESTIMATORS
    assert not (ROOT / "llm_rl" / "advantages.py").exists()
    defined = []
    for pkg in ("theory", "simulators", "llm_rl", "figures", "reproduce", "cli", "rundir"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef) and node.name in (
                        "group_advantage", "group_advantages", "zero_variance_groups"):
                    defined.append(str(path.relative_to(ROOT)))
    assert sorted(set(defined)) == ["theory/advantages.py"]


def test_sim_config_advantage_field_and_old_saved_configs():
    from simulators.config import SimConfig

    assert SimConfig().advantage == "grpo"
    with pytest.raises(ValueError, match="grpo, drgrpo"):
        SimConfig(advantage="std")
    for old, new in (("std", "grpo"), ("mean", "drgrpo")):
        saved = {**SimConfig().to_dict(), "adv_norm": old}
        del saved["advantage"]
        assert SimConfig.from_dict(saved).advantage == new
