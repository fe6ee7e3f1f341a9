"""simulators worlds: exact evaluation against independent computations, the PG weights against autograd,
configs and registries."""

import pytest
import torch
from tolerances import ATOL_F64, MC_SIGMAS

from simulators.config import SimConfig
from simulators.mdp import TabularMDP
from simulators.tabular_lm import TabularLM
from simulators.worlds import ContextualBandit, make_world, sample_categorical
from theory import pg_logit_step



def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _world(name, **kw):
    cfg = SimConfig(world=name, instances=3, seeds=2, n_states=5, n_actions=4, vocab=3, horizon=3, **kw)
    return make_world(cfg, _gen()), cfg


def test_mdp_exact_values_match_iterative_evaluation():
    mdp = TabularMDP.random(2, 1, 6, 3, 0.8, _gen())
    z = torch.randn(2, 6, 3, generator=_gen(1), dtype=torch.float64)
    ex = mdp.exact(z)
    pi = torch.softmax(z, -1)
    v = torch.zeros(2, 6, dtype=torch.float64)
    for _ in range(400):  # Bellman expectation iteration, error 0.8^400
        v = (pi * (mdp.r + 0.8 * torch.einsum("bsat,bt->bsa", mdp.P, v))).sum(-1)
    torch.testing.assert_close(ex.v, v, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close((pi * ex.adv).sum(-1), torch.zeros_like(v), atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(
        ex.agg_weight.sum(-1), torch.ones(2, dtype=torch.float64), atol=ATOL_F64, rtol=0
    )
    # discounted visitation by power series: d = (1-γ) Σ_t γ^t ρᵀ P_π^t
    p_pi = torch.einsum("bsa,bsat->bst", pi, mdp.P)
    d, occ = torch.zeros_like(v), mdp.rho.clone()
    for t in range(400):
        d += 0.2 * 0.8**t * occ
        occ = torch.einsum("bs,bst->bt", occ, p_pi)
    torch.testing.assert_close(ex.agg_weight, d, atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize("name", ["bandit", "contextual_bandit", "mdp", "tabular_lm"])
def test_pg_weight_gives_the_autograd_gradient_of_the_return(name):
    """∂J/∂z_s = w(s) π_s ⊙ (A_s − E A_s) (docs/theory.md §1.6): Proposition 1 per state with η_s = η w(s)."""
    world, cfg = _world(name)
    z = torch.randn(cfg.batch, world.n_states, world.n_actions, generator=_gen(2), dtype=torch.float64)
    z.requires_grad_(True)
    ex = world.exact(z)
    (grad,) = torch.autograd.grad(ex.reward.sum(), z)
    scale = (1 - cfg.gamma) if name == "mdp" else 1.0  # the MDP's reward is the normalised (1-γ)V(ρ)
    step = pg_logit_step(z.detach(), ex.adv.detach() * ex.pg_weight.detach().unsqueeze(-1), 1.0)
    torch.testing.assert_close(grad, scale * step, atol=ATOL_F64, rtol=0)


def test_tabular_lm_success_probability_by_enumeration():
    lm = TabularLM.random(2, 1, vocab=3, horizon=3, threshold=2, generator=_gen())
    z = torch.randn(2, lm.n_states, 3, generator=_gen(3), dtype=torch.float64)
    seqs = TabularLM.sequences(3, 3)  # [27, 3]
    logp = torch.zeros(2, 27, dtype=torch.float64)
    for t in range(3):
        states = lm.prefix_index(seqs[:, :t])  # [27]
        logp += torch.log_softmax(z, -1)[:, states, seqs[:, t]]
    expected = (logp.exp() * lm.leaf_reward).sum(-1)
    torch.testing.assert_close(lm.exact(z).reward, expected, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(lm.exact(z).v[:, 0], expected, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(
        lm.exact(z).agg_weight.sum(-1), torch.ones(2, dtype=torch.float64), atol=ATOL_F64, rtol=0
    )


def test_tabular_lm_samples_walk_the_prefix_tree():
    lm = TabularLM.random(2, 2, vocab=3, horizon=4, threshold=2, generator=_gen())
    z = torch.randn(4, lm.n_states, 3, generator=_gen(4), dtype=torch.float64)
    batch = lm.sample(z, 5, _gen(5), groups=2)
    assert batch.actions.shape == (4, 10, 4) and batch.group_size == 5 and not batch.state_major
    for t in range(4):
        torch.testing.assert_close(batch.state_ids[..., t], lm.prefix_index(batch.actions[..., :t]))
    matches = (batch.actions == lm.targets.unsqueeze(1)).sum(-1)
    torch.testing.assert_close(batch.rewards, (matches >= 2).double())


def test_sample_categorical_frequencies():
    z = torch.tensor([[0.0, 1.0, -1.0, 2.0]], dtype=torch.float64)
    n = 40_000
    a = sample_categorical(z, n, _gen(6))
    freq = torch.bincount(a.flatten(), minlength=4).double() / n
    p = torch.softmax(z, -1)[0]
    assert ((freq - p).abs() <= MC_SIGMAS * (p * (1 - p) / n).sqrt()).all()


def test_worlds_repeat_each_instance_over_its_seeds():
    bandit = ContextualBandit.random(3, 4, 2, 5, _gen())
    assert bandit.means.shape == (12, 2, 5)
    assert torch.equal(bandit.means[0], bandit.means[3]) and not torch.equal(bandit.means[3], bandit.means[4])


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("world", "gridworld", "bandit, contextual_bandit, mdp, tabular_lm"),
        ("rule", "sac", "pg, npg, entropy_npg, reinforce, grpo"),
        ("optimizer", "rmsprop", "sgd, adam"),
        ("steps", 0, "positive integer"),
        ("gamma", 1.0, r"\[0, 1\)"),
        ("lr", -1.0, "> 0"),
        ("match_threshold", 7, "match_threshold"),
    ],
)
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        SimConfig(**{field: value})


def test_config_entropy_npg_needs_a_contraction():
    with pytest.raises(ValueError, match="lr\\*tau"):
        SimConfig(rule="entropy_npg", lr=2.0, tau=1.0)
    with pytest.raises(ValueError, match="unknown SimConfig field"):
        SimConfig.from_dict({"wrld": "bandit"})
    cfg = SimConfig(world="tabular_lm", horizon=5)
    assert cfg.match_threshold == 3 and SimConfig.from_dict(cfg.to_dict()) == cfg
