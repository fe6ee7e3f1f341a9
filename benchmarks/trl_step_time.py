"""Optimizer-step time of ``integrations.trl.EntropyMechGRPOTrainer`` vs TRL's own ``GRPOTrainer``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trl_step_time.py [--objective kl_cov] [--steps 12]
        [--warmup 2] [--loss-type dapo] [--grad-accum 2] [--completion 32] [--repeats 5]

Both trainers run in this process on the same tiny Qwen2 (built in code, ``llm_rl.model``; fp32, CPU, one
thread) with identical ``GRPOConfig`` settings (same seed, data, reward, ``loss_type``, ``epsilon``,
``gradient_accumulation_steps``, ``max_completion_length``; no vLLM, no logging backends); only the policy
loss differs: TRL's PPO-clip vs the package objective ``--objective`` (Clip-Cov / KL-Cov add one no-grad
forward of the step's micro-batches, the all-gather and the selection). One step = generation (when due),
rewards, forward/backward of every micro-batch and the optimizer step, timed between the trainer's
``on_step_begin`` and ``on_step_end`` callbacks. Prints the median of ``--steps`` steps after ``--warmup``
untimed ones for each side (wall and calling-thread CPU time; ``--repeats`` training runs per side, in ABBA
order, so a shared machine's drifting load hits both sides alike) and their ratio (target <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def reward_even_length(completions, **kwargs):
    """Reward 1 iff the completion has an even number of characters."""
    return [float(len(c) % 2 == 0) for c in completions]


def step_times(cls, cfg_cls, model_dir: str, out: str, args, **extra) -> list[tuple[float, float]]:
    """(wall, calling-thread CPU) seconds of each optimizer step of ``cls`` (after the warm-up steps)."""
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.t0, self.times = None, []

        def on_step_begin(self, a, state, control, **kw):
            self.t0 = (time.perf_counter(), time.thread_time())

        def on_step_end(self, a, state, control, **kw):
            self.times.append((time.perf_counter() - self.t0[0], time.thread_time() - self.t0[1]))

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    n_prompts = (args.warmup + args.steps) * args.batch * args.grad_accum
    data = Dataset.from_dict({"prompt": [f"{i % 97}+{i % 89}=" for i in range(n_prompts)]})
    cfg = cfg_cls(output_dir=out, per_device_train_batch_size=args.batch, num_generations=args.generations,
                  gradient_accumulation_steps=args.grad_accum, max_completion_length=args.completion,
                  max_steps=args.warmup + args.steps, loss_type=args.loss_type, report_to=[], use_cpu=True,
                  bf16=False, save_strategy="no", logging_steps=10**6, seed=0, use_vllm=False,
                  disable_tqdm=True, **extra)
    timer = Timer()
    tr = cls(model=model_dir, reward_funcs=reward_even_length, args=cfg, train_dataset=data,
             processing_class=tok, callbacks=[timer])
    tr.train()
    return timer.times[args.warmup:]


def main(argv=None) -> float:
    """Run both sides and print the medians and their ratio; returns the ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objective", default="kl_cov", help="package objective of the subclass")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per side")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    p.add_argument("--loss-type", default="dapo", help="TRL loss_type (both sides)")
    p.add_argument("--grad-accum", type=int, default=2, help="gradient_accumulation_steps")
    p.add_argument("--batch", type=int, default=8, help="per_device_train_batch_size")
    p.add_argument("--generations", type=int, default=8, help="num_generations")
    p.add_argument("--completion", type=int, default=32, help="max_completion_length")
    p.add_argument("--repeats", type=int, default=5,
                   help="training runs per side, alternating TRL / ours (ABBA order) so drifting machine "
                        "load hits both sides alike")
    a = p.parse_args(argv)
    if a.steps < 1 or a.warmup < 0 or a.repeats < 1:
        raise ValueError("--steps and --repeats must be >= 1 and --warmup >= 0")
    torch.set_num_threads(1)
    import transformers
    from trl import GRPOConfig, GRPOTrainer

    from integrations.trl import EntropyMechGRPOConfig, EntropyMechGRPOTrainer
    from llm_rl.model import build_default_policy, save_policy

    transformers.utils.logging.set_verbosity_error()
    params = {"kl_cov": {"kl_ratio": 2e-3, "kl_coef": 1.0},
              "clip_cov": {"clip_ratio": 2e-4, "cov_lb": 1.0, "cov_ub": 5.0}}.get(a.objective, {})
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = build_default_policy(seed=0, max_positions=128)
        model_dir = str(save_policy(model, tok, Path(tmp) / "model"))
        sides = {"trl": (GRPOTrainer, GRPOConfig, {}),
                 "ours": (EntropyMechGRPOTrainer, EntropyMechGRPOConfig,
                          dict(objective=a.objective, objective_params=params))}
        runs = {side: [] for side in sides}
        for r in range(a.repeats):
            for side in (("trl", "ours") if r % 2 == 0 else ("ours", "trl")):
                cls, cfg_cls, extra = sides[side]
                runs[side] += step_times(cls, cfg_cls, model_dir, str(Path(tmp) / f"{side}{r}"), a, **extra)
    med = {side: [statistics.median(t[i] for t in v) for i in (0, 1)] for side, v in runs.items()}
    n = len(runs["trl"])
    print(f"conditions: {a.repeats} runs per side (alternating), {a.steps} timed steps each after {a.warmup} "
          f"warm-up steps; medians over {n} steps; 1 intra-op thread, CPU")
    print(f"TRL GRPOTrainer ({a.loss_type}, PPO-clip): median step {med['trl'][0] * 1e3:.1f} ms wall, "
          f"{med['trl'][1] * 1e3:.1f} ms thread CPU")
    print(f"EntropyMechGRPOTrainer ({a.objective}):    median step {med['ours'][0] * 1e3:.1f} ms wall, "
          f"{med['ours'][1] * 1e3:.1f} ms thread CPU")
    ratio = med["ours"][1] / med["trl"][1]
    print(f"ratio (ours / TRL) = {ratio:.3f} thread CPU, {med['ours'][0] / med['trl'][0]:.3f} wall  "
          "(target <= 1.05)")
    return ratio


if __name__ == "__main__":
    main()
