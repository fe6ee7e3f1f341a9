"""Entropy collapse on a laptop CPU: GRPO vs KL-Cov on the default tiny model (Cui et al. 2025, Fig. 1/§4).

    .venv/bin/python benchmarks/entropy_collapse.py [--task arithmetic] [--steps 200] [--seeds 0 1 2]
                                                    [--lr 1e-4] [--kl-ratio 0.2] [--kl-coef 7] [--jobs 1]

Warm-starts the default model (cached; ``entropy-mech pretrain`` defaults), then trains it with ``grpo``
(PPO-clip) and with ``kl_cov`` for the same number of steps and seeds, and prints start/end validation
accuracy (greedy, T=0.6 and T=1) and the paper's training entropy H. Targets (issue 5): with grpo,
accuracy +15 points and entropy -50% (most of the fall in the first third); kl_cov ends with >= 3x grpo's
entropy. Runs go to ``<out>/<objective>-lr<lr>-s<seed>``. ``--jobs N`` runs N trainings in parallel
processes with ``--threads`` torch threads each. Not a timed test.

What it took (measured 2026-11-26, 2 shared CPU cores, ``--jobs 2 --threads 1``, about 4 min in total): the
arithmetic task with operands 0..12; a 3000-step warm start on 20% correct, 25% one-slip wrong and 55%
systematically misconceived solutions (forgotten carries and borrows; ``Task.warm_start_mix``), so the
greedy answer is wrong wherever the misconception applies (greedy accuracy 40%, T=1 accuracy 38%, entropy
0.37 nats); RL lr 1e-4 (3e-4 and above destroyed accuracy) with 8 optimizer mini-batches per rollout step
(the paper's 8 updates per step); 200 steps; KL-Cov with k = 0.2 of the tokens and beta = 7: this toy has ~1
"forking" token in 5, far more than an LLM's chain of thought, so the paper's k = 2e-3 selects ~0 tokens per
mini-batch and does nothing, and beta = 5 ended at 2.9-3.1x grpo's entropy (beta = 10: 3.7x, but greedy
accuracy only 70%). Result (mean of 3 seeds): grpo greedy accuracy 40% -> 92%, T=0.6 accuracy 47% -> 91%,
H 0.338 -> 0.097 (-71%, two thirds of it in the first third); kl_cov (beta = 7) ends at H 0.325 (3.4x grpo)
with greedy accuracy 74%: here the high-covariance tokens are the very carry decisions RL must flip, so
restraining them slows learning.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_one(job: dict) -> dict:
    """Train one (objective, seed, lr) configuration and summarise its metrics."""
    import torch

    torch.set_num_threads(job["threads"])
    from cli.common import quiet_transformers
    from llm_rl.config import DataConfig, ObjectiveConfig, OptimConfig, TrainConfig
    from rundir.records import read_records
    from llm_rl.trainer import Trainer

    quiet_transformers()
    out = Path(job["out"])
    cfg = TrainConfig(steps=job["steps"], seed=job["seed"], model=job["model"], device="cpu",
                      val_every=max(1, job["steps"] // 5), checkpoint_every=job["steps"],
                      data=DataConfig(task=job["task"], task_knobs=job["knobs"]),
                      objective=ObjectiveConfig(name=job["objective"], params=job["params"]),
                      optim=OptimConfig(lr=job["lr"], **({"num_minibatches": job["minibatches"]}
                                                         if job["minibatches"] else {})))
    t0 = time.time()
    Trainer(cfg, out, progress=False).train()
    recs = read_records(out / "metrics.jsonl")
    ents = [r["entropy/train"] for r in recs if "entropy/train" in r]
    vals = [r for r in recs if "val/acc" in r]
    k = max(1, len(ents) // 10)  # average the first/last 10% of steps: H is noisy step to step
    return dict(job, acc0=vals[0]["val/acc"], acc1=vals[-1]["val/acc"], s0=vals[0]["val/acc_sampled"],
                s1=vals[-1]["val/acc_sampled"], t0=vals[0]["val/acc_t1"], t1=vals[-1]["val/acc_t1"],
                H0=statistics.mean(ents[:k]), H_third=statistics.mean(ents[len(ents) // 3 - k // 2:][:k]),
                H1=statistics.mean(ents[-k:]), wall=time.time() - t0)


def main() -> int:
    """Parse arguments, run every (lr, objective, seed) job and print the summary and target checks."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4])
    ap.add_argument("--kl-ratio", type=float, default=0.2, help="KL-Cov token fraction k")
    ap.add_argument("--kl-coef", type=float, default=7.0, help="KL-Cov penalty beta")
    ap.add_argument("--objectives", nargs="+", default=["grpo", "kl_cov"], choices=["grpo", "kl_cov"])
    ap.add_argument("--model", default="", help="starting model (default: cached warm start)")
    ap.add_argument("--out", default="runs/entropy_collapse")
    ap.add_argument("--minibatches", type=int, default=0,
                    help="optimizer steps per rollout step (0 = default)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="", help="also write every row to this JSON file")
    ap.add_argument("--knob", action="append", metavar="KEY=VALUE",
                    help="task knob (also used for the warm start)")
    ap.add_argument("--pretrain-steps", type=int, default=0, help="warm-start steps (0 = pretrain default)")
    ap.add_argument("--wrong-frac", type=float, default=-1.0, help="warm-start wrong fraction (<0 = default)")
    args = ap.parse_args()
    from cli.common import parse_kv, quiet_transformers
    from llm_rl.pretrain import PretrainConfig, get_or_pretrain

    quiet_transformers()
    knobs = parse_kv(args.knob, "--knob")
    t_all = time.time()
    model = args.model
    if not model:
        pkw = {"steps": args.pretrain_steps} if args.pretrain_steps else {}
        if args.wrong_frac >= 0:
            pkw["wrong_frac"] = args.wrong_frac
        path, info = get_or_pretrain(PretrainConfig(task=args.task, task_knobs=knobs, **pkw), progress=False)
        model = str(path)
        print(f"warm start {model}: {json.dumps(info['val'])}")
    kl = {"kl_ratio": args.kl_ratio, "kl_coef": args.kl_coef}
    if args.kl_ratio > 0.05:  # this tiny task has far more "forking" tokens per response than an LLM's CoT
        kl["allow_large_ratio"] = True
    objectives = tuple((o, {} if o == "grpo" else kl) for o in args.objectives)
    jobs = [dict(task=args.task, knobs=knobs, objective=o, params=p, seed=s, lr=lr,
                 steps=args.steps, model=model,
                 threads=args.threads, minibatches=args.minibatches, out=f"{args.out}/{o}-lr{lr:g}-s{s}")
            for lr in args.lr for o, p in objectives for s in args.seeds]
    if args.jobs > 1:
        with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
            rows = list(ex.map(run_one, jobs))
    else:
        rows = [run_one(j) for j in jobs]
    for r in rows:
        print(f"{r['objective']:7s} lr {r['lr']:g} seed {r['seed']}: "
              f"acc greedy {r['acc0']:.3f}->{r['acc1']:.3f} "
              f"T0.6 {r['s0']:.3f}->{r['s1']:.3f} T1 {r['t0']:.3f}->{r['t1']:.3f}  "
              f"H {r['H0']:.3f}->{r['H_third']:.3f}(1/3)->{r['H1']:.3f}  {r['wall']:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    for lr in args.lr:
        print(f"\nsummary lr={lr:g} (mean over seeds)")
        summary = {}
        for o, _ in objectives:
            rs = [r for r in rows if r["objective"] == o and r["lr"] == lr]
            m = {k: statistics.mean(r[k] for r in rs) for k in ("acc0", "acc1", "s0", "s1", "t0", "t1", "H0",
                                                                "H_third", "H1")}
            summary[o] = m
            print(f"  {o:7s} acc greedy {m['acc0']:.3f}->{m['acc1']:.3f}  T0.6 {m['s0']:.3f}->{m['s1']:.3f} "
                  f"({100 * (m['s1'] - m['s0']):+.1f} pts)  H {m['H0']:.3f}->{m['H1']:.3f} "
                  f"({100 * (m['H1'] / m['H0'] - 1):+.0f}%)")
        if len(summary) < 2:
            continue
        g, k = summary["grpo"], summary["kl_cov"]
        fall = g["H0"] - g["H1"]
        checks = {
            "grpo sampled (T=0.6) accuracy +15 pts": g["s1"] - g["s0"] >= 0.15,
            "grpo entropy -50%": g["H1"] <= 0.5 * g["H0"],
            "most of the fall in the first third": fall > 0 and (g["H0"] - g["H_third"]) >= 0.5 * fall,
            "kl_cov end entropy >= 3x grpo": k["H1"] >= 3 * g["H1"],
        }
        for name, ok in checks.items():
            print(f"  [{'x' if ok else ' '}] {name}")
    print(f"total wall time {time.time() - t_all:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
