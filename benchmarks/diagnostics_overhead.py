"""Share of a diagnosed rollout step spent on entropy-dynamics diagnostics (with the own / cross / history
decomposition of docs/theory.md §1.17), default model and settings.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diagnostics_overhead.py [--steps 12] [--task T] \
        [--max-states 64] [--model DIR]

Trains the task's default warm start with ``grpo`` (lr 1e-4, 8 mini-batches, as the reproduce plans) twice in
this process from the same seed: with ``--diagnose-every 1`` and without. Prints (a) the directly timed
diagnostic share ``time/diagnose_s / (time/step_s − time/diagnose_s)`` of a diagnosed rollout step (all its
mini-batch updates, generation and scoring included): probe states, the reverse-mode per-state terms before
the step, the forward-mode linearised change and the logits after it, the vocabulary pass and the
per-state file; robust to machine noise; and (b) the ratio of mean step times of the two runs.
Target (issue 12): <= 50% on 64 probed states. Both runs' final validation must agree exactly: diagnostics
only read the model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _run(model: str, task: str, steps: int, diagnose_every: int, max_states: int):
    from llm_rl.config import DataConfig, OptimConfig, TrainConfig
    from llm_rl.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(steps=steps, model=model, val_every=10**6, checkpoint_every=10**6,
                          diagnose_every=diagnose_every, diagnose_max_states=max_states,
                          data=DataConfig(task=task),
                          optim=OptimConfig(lr=1e-4, num_minibatches=8))
        recs = Trainer(cfg, out, progress=False).train()
    return [r for r in recs if "time/step_s" in r], recs[-1]


def main() -> int:
    """Run both trainings and print the overhead."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="stepwise")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--max-states", type=int, default=64, help="probed states per diagnosed step")
    ap.add_argument("--model", default="", help="a model directory (default: the task's cached warm start)")
    args = ap.parse_args()
    from cli.common import quiet_transformers
    from llm_rl.pretrain import PretrainConfig, get_or_pretrain

    quiet_transformers()
    model = args.model or str(get_or_pretrain(PretrainConfig(task=args.task))[0])
    plain, final_plain = _run(model, args.task, args.steps, 0, args.max_states)
    diag, final_diag = _run(model, args.task, args.steps, 1, args.max_states)
    d = [r["time/diagnose_s"] for r in diag]
    rest = [r["time/step_s"] - r["time/diagnose_s"] - r.get("time/val_s", 0.0) for r in diag]  # no val.
    share = statistics.mean(d) / statistics.mean(rest)
    ratio = statistics.mean(r["time/step_s"] for r in diag) / statistics.mean(r["time/step_s"] for r in plain)
    print(f"{args.steps} steps: diagnosing {statistics.mean(d) * 1e3:.1f} ms per step, rest of the rollout "
          f"step {statistics.mean(rest) * 1e3:.1f} ms")
    print(f"step time with / without diagnostics: {ratio:.3f} (noisy: two runs)")
    same = all(final_plain.get(k) == final_diag.get(k) for k in final_plain if k.startswith("val/"))
    print(f"final validation identical with and without diagnostics: {same}")
    states = statistics.mean(r["diag/states"] for r in diag)
    print(f"overhead: {share * 100:.1f}% of a diagnosed rollout step, {states:.0f} probed states on average "
          f"(target <= 50%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
