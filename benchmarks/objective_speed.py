"""Speed of the verl plugin's Clip-Cov / KL-Cov loss (forward + backward) against verl's own and PPO-clip.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/objective_speed.py [--rows 16] [--cols 2048] [--repeats 30]

One micro-batch ``[rows, cols]`` of log-probabilities (off-policy: log π − log π_old ~ N(0, 0.1²), GRPO-style
advantages constant per row, ragged response lengths). For each loss it times ``loss = fn(...)`` plus
``loss.backward()`` on the same inputs, keeping the median of ``--repeats`` runs after warm-up:

    em_clip_cov / em_kl_cov   integrations.verl (global selection, seeded, no host sync)
    clip_cov / kl_cov         verl's own (per-call selection, .item(), CPU top-k / randperm)
    vanilla                   verl's PPO-clip (the plain baseline)

and prints plugin / verl (target <= 1.0x) and plugin / PPO-clip (target <= 1.1x). Needs verl (``make
install``). On a GPU pass ``--device cuda``: there verl's versions also pay their host synchronisations.
"""

from __future__ import annotations

import argparse
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


def _time(fn, inputs, config, repeats: int, device: str) -> float:
    import torch

    old, lp, adv, mask = inputs
    times = []
    for i in range(repeats + 3):
        x = lp.clone().requires_grad_(True)
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, _ = fn(old_log_prob=old, log_prob=x, advantages=adv, response_mask=mask,
                     loss_agg_mode="token-mean", config=config, rollout_is_weights=None)
        loss.backward()
        if device != "cpu":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    """Time the five losses and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch
    from omegaconf import OmegaConf
    from verl.trainer.ppo import core_algos

    import integrations.verl  # noqa: F401  (registers em_clip_cov / em_kl_cov)

    config = OmegaConf.create(dict(
        clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=3.0, global_batch_info={},
        policy_loss=dict(loss_mode="vanilla", clip_cov_ratio=0.0002, clip_cov_lb=1.0, clip_cov_ub=5.0,
                         kl_cov_ratio=0.002, ppo_kl_coef=1.0)))
    inputs = _inputs(args.rows, args.cols, args.device)
    print(f"{args.rows} x {args.cols} micro-batch ({int(inputs[3].sum())} tokens), device {args.device}, "
          f"{torch.get_num_threads()} thread(s), median of {args.repeats}")
    t = {name: _time(core_algos.get_policy_loss_fn(name), inputs, config, args.repeats, args.device)
         for name in ("vanilla", "clip_cov", "kl_cov", "em_clip_cov", "em_kl_cov")}
    for name, sec in t.items():
        print(f"  {name:<12} {sec * 1e3:8.2f} ms")
    for ours, theirs in (("em_clip_cov", "clip_cov"), ("em_kl_cov", "kl_cov")):
        print(f"{ours}: {t[ours] / t[theirs]:.2f}x verl's {theirs} (target <= 1.0x), "
              f"{t[ours] / t['vanilla']:.2f}x PPO-clip (target <= 1.1x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
