"""Classic results reproduced by the simulators (docs/theory.md §3 and §4 statements 10, 11,
15-17), plus the η² scaling of Lemma 1's error along real trajectories."""

import math

import numpy as np
import pytest
import torch
from tolerances import (
    ATOL_F64,
    BOUND_SLACK,
    EXACT_F64,
    QUADRATIC_RATIO,
    SIM_CONTRACTION_RTOL,
    SIM_MEI_TAIL_RATIO,
)

from simulators.config import SimConfig
from simulators.rules import ExactPG, make_rule, reinforce_logit_step
from simulators.run import simulate
from simulators.tabular_lm import TabularLM
from simulators.worlds import ContextualBandit, TokenBatch, make_world, state_major_batch
from theory import entropy, log_policy



def _pg_bandit_trajectory(means: torch.Tensor, lr: float, steps: int):
    """Exact PG from z0 = 0 on bandits ``means [B, K]``: (gap_t, π_t(a*)), each ``[steps+1, B]``."""
    cfg = SimConfig(world="bandit", rule="pg", lr=lr, n_actions=means.shape[-1], instances=means.shape[0])
    world = ContextualBandit(means.unsqueeze(1), "none")
    z = torch.zeros_like(world.means)
    rule = ExactPG(cfg, world, z, torch.Generator())
    best, star = means.amax(-1), means.argmax(-1)
    gaps, p_star = [], []
    for _ in range(steps + 1):
        ex = world.exact(z)
        gaps.append(best - ex.reward)
        p_star.append(torch.softmax(z[:, 0], -1).gather(-1, star.unsqueeze(-1)).squeeze(-1))
        z = rule.step(z, ex).logits
    return torch.stack(gaps), torch.stack(p_star)


def _mei_check(steps: int):
    means = torch.rand(8, 5, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    gaps, p_star = _pg_bandit_trajectory(means, 2 / 5, steps)
    t = torch.arange(steps + 1, dtype=torch.float64).unsqueeze(-1)
    c = torch.cummin(p_star, dim=0).values  # C_t = min_{s<=t} π_s(a*)
    tg = t * gaps
    assert (tg[1:] <= 5 / c[1:] ** 2).all(), "Mei et al.: t·gap_t <= 5/C²"
    # Θ(1/t), not exponential: t·gap stays bounded away from 0 on the tail
    assert (tg[-1] >= SIM_MEI_TAIL_RATIO * tg[steps // 2]).all()
    assert (tg[-1] > 0).all()


def test_exact_pg_bandit_t_gap_bounded():
    """docs/theory.md §4.17 (Mei et al. 2020) at moderate t."""
    _mei_check(2_000)


@pytest.mark.slow
def test_exact_pg_bandit_t_gap_bounded_long():
    _mei_check(100_000)


def test_npg_bandit_gap_rate():
    """docs/theory.md §4.16: from uniform init gap_T <= (K−1)/(e η T) for every T >= 1."""
    k, lr, steps = 10, 0.3, 100
    run = simulate(
        SimConfig(world="bandit", rule="npg", lr=lr, n_actions=k, steps=steps, instances=16, seed=3)
    )
    gap = run.arrays["optimal_reward"] - np.concatenate(
        [run.arrays["reward"][1:], run.arrays["final_reward"][None]]
    )
    t = np.arange(1, steps + 1)[:, None]
    assert (gap <= (k - 1) / (math.e * lr * t) + BOUND_SLACK).all()


def test_entropy_regularised_npg_contracts_exactly():
    """docs/theory.md §4.15: z_t − r/τ = (1 − ητ)^t (z_0 − r/τ) up to constant shifts, and the log-π bound."""
    lr, tau, steps = 0.5, 0.4, 200
    run = simulate(
        SimConfig(
            world="bandit",
            rule="entropy_npg",
            lr=lr,
            tau=tau,
            steps=steps,
            instances=6,
            init="random",
            init_scale=2.0,
            record_logits=True,
            seed=5,
        )
    )
    cfg = run.config
    world = make_world(cfg, torch.Generator().manual_seed(cfg.seed))
    r = world.means.numpy()
    z = run.arrays["logits"]  # [T+1, B, 1, K]
    centre = lambda x: x - x.mean(-1, keepdims=True)  # noqa: E731
    target = centre(r / tau)
    rate = (1 - lr * tau) ** np.arange(steps + 1)
    expected = target + rate[:, None, None, None] * (centre(z[0]) - target)
    np.testing.assert_allclose(centre(z), expected, rtol=SIM_CONTRACTION_RTOL, atol=SIM_CONTRACTION_RTOL)
    log_pi = log_policy(torch.from_numpy(z)).numpy()
    log_star = log_policy(torch.from_numpy(r / tau)).numpy()
    sup = np.abs(log_pi - log_star).max(-1)  # [T+1, B, 1]
    init_dist = np.abs(z[0] - r / tau).max(-1)
    assert (sup <= 2 * rate[:, None, None] * init_dist + BOUND_SLACK).all()
    h_star = entropy(torch.from_numpy(r / tau)).numpy()
    np.testing.assert_allclose(run.arrays["final_entropy"], h_star, atol=1e-9)


def test_entropy_regularised_npg_mdp_reaches_its_soft_fixed_point():
    """Soft policy iteration (η = (1−γ)/τ) stops moving: A_τ − τ log π is constant per state."""
    cfg = SimConfig(
        world="mdp",
        rule="entropy_npg",
        gamma=0.7,
        tau=0.5,
        lr=0.3 / 0.5,
        steps=150,
        n_states=4,
        n_actions=3,
        init="random",
    )
    run = simulate(cfg)
    assert np.abs(run.arrays["dH_obs"][-1]).max() < 1e-10


@pytest.mark.parametrize("world", ["bandit", "contextual_bandit"])
def test_npg_entropy_monotone_from_uniform(world):
    """docs/theory.md §4.10(b): along the NPG path from uniform init, H never increases."""
    run = simulate(SimConfig(world=world, rule="npg", lr=0.7, steps=120, instances=8, n_states=3))
    assert (run.arrays["dH_obs"] <= BOUND_SLACK).all()
    assert (run.arrays["dH_obs"][:10] < 0).all()


@pytest.mark.parametrize("name", ["bandit", "contextual_bandit", "mdp"])
def test_reinforce_unbiased_by_enumeration_per_state(name):
    """docs/theory.md §4.11: Σ_a π(a|s) η w(s) (R_a − V(s))(e_a − π_s) equals the exact PG step."""
    cfg = SimConfig(
        world=name,
        rule="reinforce",
        instances=2,
        seeds=2,
        n_states=4,
        n_actions=5,
        reward_noise="none",
        lr=0.3,
    )
    world = make_world(cfg, torch.Generator().manual_seed(0))
    z = torch.randn(
        cfg.batch,
        world.n_states,
        world.n_actions,
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    ex = world.exact(z)
    pi = torch.softmax(z, -1)
    total = torch.zeros_like(z)
    for a in range(world.n_actions):
        actions = torch.full((cfg.batch, world.n_states, 1), a, dtype=torch.long)
        reward = ex.q[..., a : a + 1]  # E[R | s, a]
        batch = state_major_batch(actions, reward, ex.v.unsqueeze(-1), ex.pg_weight.unsqueeze(-1))
        total += pi[..., a : a + 1] * reinforce_logit_step(z, batch, batch.rewards - batch.baseline, cfg.lr)
    exact = make_rule(cfg.__class__(**{**cfg.to_dict(), "rule": "pg"}), world, z, None).step(z, ex).logits - z
    torch.testing.assert_close(total, exact, atol=EXACT_F64, rtol=0)


def test_reinforce_unbiased_by_enumeration_tabular_lm():
    """Weighting every one of the V^L responses by its probability turns the sampled token-level step
    into the exact PG step at every prefix (including prefixes a response never visits)."""
    lm = TabularLM.random(2, 1, vocab=3, horizon=3, threshold=2, generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, lm.n_states, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    seqs = TabularLM.sequences(3, 3)  # [27, 3]
    states = torch.stack([lm.prefix_index(seqs[:, :t]) for t in range(3)], -1)  # [27, 3]
    logp = torch.log_softmax(z, -1)[:, states, seqs].sum(-1)  # [2, 27]
    ex = lm.exact(z)
    batch = TokenBatch(
        state_ids=states.expand(2, 27, 3),
        actions=seqs.expand(2, 27, 3),
        mask=torch.ones(2, 27, 3, dtype=torch.bool),
        rewards=lm.leaf_reward,
        baseline=ex.v[:, :1].expand(2, 27),
        coef=logp.exp(),
        group_size=27,
        state_major=False,
    )
    sampled = reinforce_logit_step(z, batch, batch.rewards - batch.baseline, 0.5)
    cfg = SimConfig(world="tabular_lm", rule="pg", lr=0.5, vocab=3, horizon=3)
    exact = ExactPG(cfg, lm, z, None).step(z, ex).logits - z
    torch.testing.assert_close(sampled, exact, atol=EXACT_F64, rtol=0)


def _matched_error_ratio(config: SimConfig, steps: int) -> np.ndarray:
    """|ΔH − first order| of a run at η over the run at η/2 (twice the steps) at matched times ηt."""
    big = simulate(config.__class__(**{**config.to_dict(), "steps": steps}))
    small = simulate(config.__class__(**{**config.to_dict(), "steps": 2 * steps, "lr": config.lr / 2}))
    err = lambda r: np.abs(r.arrays["dH_obs"] - r.arrays["dH_first"])  # noqa: E731
    e_big, e_small = err(big), err(small)[::2]
    keep = e_big > 1e-13  # ignore states whose logits do not move (rounding level)
    return e_big[keep] / e_small[keep]


@pytest.mark.parametrize(
    "world,rule,lr", [("bandit", "npg", 0.02), ("mdp", "pg", 0.05), ("tabular_lm", "npg", 0.02)]
)
def test_first_order_error_scales_as_eta_squared_along_trajectories(world, rule, lr):
    """docs/theory.md §4.4 on real trajectories: halving η (and doubling the steps) divides Lemma 1's per-step
    error at matched times by 4."""
    cfg = SimConfig(
        world=world, rule=rule, lr=lr, instances=4, n_states=4, n_actions=5, init="random", seed=2
    )
    ratio = _matched_error_ratio(cfg, 40)
    assert ratio.size > 0
    lo, hi = QUADRATIC_RATIO
    assert lo <= np.median(ratio) <= hi
    assert np.mean((ratio >= lo) & (ratio <= hi)) >= 0.95, np.quantile(ratio, [0.01, 0.5, 0.99])


def test_second_order_beats_first_order_on_small_steps():
    run = simulate(
        SimConfig(
            world="contextual_bandit", rule="npg", lr=0.05, steps=30, instances=4, init="random", seed=4
        )
    )
    first = np.abs(run.arrays["dH_obs"] - run.arrays["dH_first"])
    second = np.abs(run.arrays["dH_obs"] - run.arrays["dH_second"])
    assert np.median(second) < 0.1 * np.median(first)
    assert (first <= run.arrays["first_order_bound"] + BOUND_SLACK).all()
    # exact NPG: Theorem 2's prediction is Lemma 1 of the actual step
    np.testing.assert_allclose(run.arrays["dH_thm2"], run.arrays["dH_first"], atol=ATOL_F64, rtol=0)
