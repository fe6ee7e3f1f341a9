"""Rollout and update throughput (tokens/s) of the llm_rl trainer's default configuration.

    .venv/bin/python benchmarks/trainer_throughput.py [--steps 10] [--model DIR] [--device auto]

Runs ``--steps`` rollout steps of ``grpo`` from the default warm start (or ``--model``) and reports
response tokens sampled per second of rollout time (all dynamic-sampling rounds) and response tokens
trained per second of update time (tokens × ppo_epochs, forward + backward + optimizer). The issue also
asks for the same numbers from TRL's ``GRPOTrainer`` in the same run; that comparison is NOT implemented
yet (trl is not installed in the development environment), and the script says so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    """Run the measurement and print tokens/s."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--model", default="")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from llm_rl.cli_common import quiet_transformers
    from llm_rl.config import DataConfig, TrainConfig
    from llm_rl.metrics import read_metrics
    from llm_rl.pretrain import PretrainConfig, get_or_pretrain
    from llm_rl.trainer import Trainer

    quiet_transformers()
    model = args.model or str(get_or_pretrain(PretrainConfig(task=args.task))[0])
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(steps=args.steps, model=model, device=args.device, val_every=10**6,
                          checkpoint_every=10**6, data=DataConfig(task=args.task))
        t0 = time.time()
        Trainer(cfg, out, progress=False).train()
        wall = time.time() - t0
        recs = [r for r in read_metrics(Path(out) / "metrics.jsonl") if "time/rollout_s" in r]
    roll_tok = sum(r["rollout/tokens"] for r in recs)
    roll_s = sum(r["time/rollout_s"] for r in recs)
    upd_tok = sum(r.get("rollout/groups", 0) * cfg.rollout.group_size * r.get("rollout/response_len", 0)
                  * cfg.optim.ppo_epochs for r in recs)
    upd_s = sum(r.get("time/update_s", 0.0) for r in recs)
    print(f"llm_rl  rollout {roll_tok / roll_s:10.0f} tok/s   update {upd_tok / max(upd_s, 1e-9):10.0f} tok/s   "
          f"({len(recs)} steps, {wall:.1f}s wall incl. final validation)")
    try:
        import trl  # noqa: F401
    except ImportError:
        print("TRL comparison skipped: trl is not installed (pip install '.[bench]')")
        return 0
    print("TRL comparison: not implemented yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
