"""Speed of the verl plugin's Clip-Cov / KL-Cov loss (forward + backward) against verl's own and PPO-clip.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/objective_speed.py [--rows 16] [--cols 2048] [--repeats 100]
        [--warmup 3] [--device cpu] [--config actor|omegaconf]

One micro-batch ``[rows, cols]`` of log-probabilities (off-policy: log π − log π_old ~ N(0, 0.1²), GRPO-style
advantages constant per row, ragged response lengths) and the actor config verl hands its policy losses
(``ActorConfig`` with ``global_batch_info`` filled as verl's ``ppo_loss`` does; ``--config omegaconf``: the
same settings as a ``DictConfig``). It times ``loss = fn(...)`` plus ``loss.backward()`` on the same inputs
for every loss, interleaved (each round runs all five once, in a rotating order, so a shared machine's load
hits baseline and candidates alike), and keeps each loss's median of ``--repeats`` rounds after ``--warmup``
rounds, of wall time, of the calling thread's CPU time (``time.thread_time``; on CPU the backward runs in
that thread too; it does not count time the thread waits while other processes hold the cores, so it is the
figure to trust on a shared machine) and of the backward pass's share of it:

    em_clip_cov / em_kl_cov   integrations.verl (global selection, seeded, no host sync)
    clip_cov / kl_cov         verl's own (per-call selection, .item(), CPU top-k / randperm)
    vanilla                   verl's PPO-clip (the plain baseline)

and prints the conditions (sizes, config, device, threads, repeats, statistic) and plugin / verl (target
<= 1.0x) and plugin / PPO-clip (target <= 1.1x). Needs verl (``make install``). On a GPU pass
``--device cuda``: there verl's versions also pay their host synchronisations.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _inputs(rows: int, cols: int, device: str, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(cols // 4, cols + 1, (rows,), generator=g)
    mask = torch.arange(cols)[None, :] < lengths[:, None]
    old = -torch.rand(rows, cols, generator=g) * 4
    lp = old + 0.1 * torch.randn(rows, cols, generator=g)
    adv = torch.randn(rows, 1, generator=g).expand(rows, cols).contiguous()
    return [t.to(device) for t in (old, lp, adv, mask)]


def _config(kind: str, num_tokens: int, rows: int):
    """The actor config verl hands its policy losses: ``ActorConfig`` with ``global_batch_info`` filled as
    verl's ``ppo_loss`` fills it (one data-parallel rank, this micro-batch is the mini-batch), or the same
    settings as an OmegaConf ``DictConfig``."""
    settings = dict(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=3.0)
    losses = dict(loss_mode="vanilla", clip_cov_ratio=0.0002, clip_cov_lb=1.0, clip_cov_ub=5.0,
                  kl_cov_ratio=0.002, ppo_kl_coef=1.0)
    info = dict(dp_size=1, batch_num_tokens=num_tokens, global_batch_size=rows, loss_scale_factor=None)
    if kind == "omegaconf":
        from omegaconf import OmegaConf

        return OmegaConf.create(dict(**settings, global_batch_info=info, policy_loss=losses))
    from verl.workers.config import ActorConfig, PolicyLossConfig

    config = ActorConfig(strategy="fsdp", ppo_micro_batch_size_per_gpu=rows, rollout_n=1,
                         policy_loss=PolicyLossConfig(**losses), **settings)
    config.global_batch_info.update(info)
    return config


def _call(fn, inputs, config, device: str) -> tuple[float, float, float]:
    """(wall, this thread's CPU, of which backward CPU) seconds of one ``loss = fn(...)`` plus
    ``loss.backward()`` on a fresh leaf copy of log π (on CPU autograd runs the backward in the calling
    thread)."""
    import torch

    old, lp, adv, mask = inputs
    x = lp.clone().requires_grad_(True)
    if device != "cpu":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.thread_time()
    loss, _ = fn(old_log_prob=old, log_prob=x, advantages=adv, response_mask=mask,
                 loss_agg_mode="token-mean", config=config, rollout_is_weights=None)
    if device != "cpu":
        torch.cuda.synchronize()
    c1 = time.thread_time()
    loss.backward()
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.thread_time() - c0, time.thread_time() - c1


def _time_interleaved(fns: dict, inputs, config, repeats: int, warmup: int, device: str) -> dict:
    """{loss: (median wall, median thread CPU, median backward CPU) seconds}; each round calls every loss
    once, in an order rotated by one per round, so baseline and candidate see the same machine load (a shared
    machine drifts between phases)."""
    names = list(fns)
    times: dict = {name: [] for name in names}
    for r in range(warmup + repeats):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            sec = _call(fns[name], inputs, config, device)
            if r >= warmup:
                times[name].append(sec)
    return {name: tuple(statistics.median(x) for x in zip(*v)) for name, v in times.items()}


def main() -> int:
    """Time the five losses interleaved and print the ratios with their conditions."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", choices=("actor", "omegaconf"), default="actor",
                    help="what the losses read their settings from: verl's ActorConfig dataclass (what "
                         "verl's ppo_loss passes) or a DictConfig (each field read costs ~14 us)")
    args = ap.parse_args()
    if args.rows < 1 or args.cols < 4 or args.repeats < 1 or args.warmup < 0:
        ap.error("need --rows >= 1, --cols >= 4, --repeats >= 1, --warmup >= 0")
    import torch
    from verl.trainer.ppo import core_algos

    import integrations.verl  # noqa: F401  (registers em_clip_cov / em_kl_cov)

    inputs = _inputs(args.rows, args.cols, args.device)
    config = _config(args.config, int(inputs[3].sum()), args.rows)
    names = ("vanilla", "clip_cov", "kl_cov", "em_clip_cov", "em_kl_cov")
    fns = {name: core_algos.get_policy_loss_fn(name) for name in names}
    print(f"conditions: {args.rows} x {args.cols} micro-batch ({int(inputs[3].sum())} tokens), "
          f"config {type(config).__name__}, "
          f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s) "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), forward + backward, "
          f"median of {args.repeats} interleaved rounds after {args.warmup} warm-up rounds "
          "(wall and thread CPU)")
    t = _time_interleaved(fns, inputs, config, args.repeats, args.warmup, args.device)
    print(f"  {'loss':<12} {'wall':>9} {'CPU':>9} {'bwd CPU':>9}   (medians)")
    for name, (wall, cpu, bwd) in t.items():
        print(f"  {name:<12} {wall * 1e3:6.3f} ms {cpu * 1e3:6.3f} ms {bwd * 1e3:6.3f} ms")
    for ours, theirs in (("em_clip_cov", "clip_cov"), ("em_kl_cov", "kl_cov")):
        for i, stat in ((0, "median wall"), (1, "median CPU")):
            print(f"{ours} ({stat}): {t[ours][i] / t[theirs][i]:.2f}x verl's {theirs} (target <= 1.0x), "
                  f"{t[ours][i] / t['vanilla'][i]:.2f}x PPO-clip (target <= 1.1x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
