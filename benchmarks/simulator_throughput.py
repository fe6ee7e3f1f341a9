"""Throughput of the vectorised exact-PG simulator step against a per-state Python loop.

One step on a contextual bandit with 1024 states x 64 actions: exact advantages, the PG logit step,
and everything the recorder stores (entropy, observed ΔH, Lemma 1, second order, Theorems 1 and 2,
first-order error bound). The vectorised path is the simulator's own code (``ExactPG.step`` +
``record_step``); the loop calls the same ``theory`` functions one state (a ``[64]`` vector) at a time.
Both run in this process, on the CPU, with the same thread count.

    python benchmarks/simulator_throughput.py [--states 1024] [--actions 64] [--repeats 5] [--threads 1]

The last line printed is ``speedup: <loop time / vectorised time>x`` (target >= 100x).
"""

from __future__ import annotations

import argparse
import time

import torch

from simulators.config import SimConfig
from simulators.recorder import record_step
from simulators.rules import ExactPG
from simulators.worlds import ContextualBandit
from theory import (
    entropy,
    entropy_change,
    first_order_entropy_change,
    first_order_error_bound,
    pg_logit_step,
    predicted_entropy_change,
    second_order_entropy_change,
)


def vectorised_step(rule: ExactPG, world: ContextualBandit, z: torch.Tensor, lr: float):
    ex = world.exact(z)
    result = rule.step(z, ex)
    return result.logits, record_step(z, result, ex, lr)


def loop_step(means: torch.Tensor, z: torch.Tensor, lr: float):
    """Same step, one state at a time: z ``[S, K]``, means ``[S, K]``, ρ(s) = 1/S."""
    n_states = z.shape[0]
    new, rec = (
        torch.empty_like(z),
        {
            k: torch.empty(n_states, dtype=z.dtype)
            for k in ("entropy", "dH_obs", "dH_first", "dH_second", "dH_thm1", "dH_thm2", "bound")
        },
    )
    for s in range(n_states):
        zs, r = z[s], means[s]
        adv = r - (torch.softmax(zs, -1) * r).sum()
        delta = pg_logit_step(zs, adv / n_states, lr)
        new[s] = zs + delta
        rec["entropy"][s] = entropy(zs)
        rec["dH_obs"][s] = entropy_change(zs, delta)
        rec["dH_first"][s] = first_order_entropy_change(zs, delta)
        rec["dH_second"][s] = second_order_entropy_change(zs, delta)
        rec["dH_thm1"][s] = predicted_entropy_change(zs, adv / n_states, lr, "pg")
        rec["dH_thm2"][s] = predicted_entropy_change(zs, adv, lr, "npg")
        rec["bound"][s] = first_order_error_bound(zs, delta)
    return new, rec


def best_time(fn, repeats: int, device: str = "cpu") -> float:
    """Fastest of ``repeats`` wall-clock timings of ``fn()`` (after one warm-up; CUDA synchronised)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=1024)
    parser.add_argument("--actions", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both paths")
    parser.add_argument(
        "--device", default="cpu", help="device of the vectorised step (the loop stays on CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lr = 0.5
    gen = torch.Generator().manual_seed(0)
    world = ContextualBandit.random(1, 1, args.states, args.actions, gen)
    z = torch.randn(1, args.states, args.actions, generator=gen, dtype=torch.float64)
    means_cpu, z_cpu = world.means[0].clone(), z[0].clone()
    world.means, z = world.means.to(args.device), z.to(args.device)
    rule = ExactPG(SimConfig(world="contextual_bandit", rule="pg", lr=lr, device=args.device), world, z, gen)

    # the two paths agree
    new_v, rec_v = vectorised_step(rule, world, z, lr)
    new_l, rec_l = loop_step(means_cpu, z_cpu, lr)
    torch.testing.assert_close(new_v[0].cpu(), new_l, atol=1e-12, rtol=0)
    for key in ("dH_obs", "dH_first", "dH_second", "dH_thm1", "dH_thm2"):
        torch.testing.assert_close(rec_v[key][0].cpu(), rec_l[key], atol=1e-12, rtol=0)

    t_vec = best_time(lambda: vectorised_step(rule, world, z, lr), args.repeats, args.device)
    t_loop = best_time(lambda: loop_step(means_cpu, z_cpu, lr), max(1, args.repeats // 2))
    print(
        f"states x actions: {args.states} x {args.actions}, torch threads: {args.threads}, "
        f"vectorised on: {args.device}, loop on: cpu"
    )
    print(f"vectorised step: {t_vec * 1e3:.2f} ms   ({args.states / t_vec:,.0f} states/s)")
    print(f"per-state loop:  {t_loop * 1e3:.2f} ms   ({args.states / t_loop:,.0f} states/s)")
    print(f"speedup: {t_loop / t_vec:.1f}x")


if __name__ == "__main__":
    main()
