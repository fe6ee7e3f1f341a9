"""``entropy-mech pretrain``: supervised warm start of the default model (cached by config hash).

Example::

    entropy-mech pretrain --task arithmetic
    entropy-mech pretrain --task countdown --knob n_numbers=3 --steps 1200 --wrong-frac 0.5
"""

from __future__ import annotations

import argparse
import json

from .common import fail, parse_kv, quiet_transformers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech pretrain``."""
    from llm_rl.pretrain import PretrainConfig
    from llm_rl.tasks import TASKS

    d = PretrainConfig()
    parser.add_argument("--task", required=True, help=f"task name: {', '.join(sorted(TASKS))}")
    parser.add_argument("--knob", action="append", metavar="KEY=VALUE", help="task difficulty knob (repeatable)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per step")
    parser.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    parser.add_argument("--wrong-frac", type=float, default=None,
                        help="fraction of one-slip wrong solutions in the data (default: the task's)")
    parser.add_argument("--misconception-frac", type=float, default=None,
                        help="fraction of systematically misconceived solutions (default: the task's)")
    parser.add_argument("--seed", type=int, default=d.seed, help="initialisation / data-sampling seed")
    parser.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the train/val splits")
    parser.add_argument("--n-train", type=int, default=d.n_train, help="training prompts")
    parser.add_argument("--n-val", type=int, default=d.n_val, help="validation prompts")
    parser.add_argument("--model-size", action="append", metavar="KEY=VALUE",
                        help="override a default model size, e.g. hidden_size=128 (repeatable)")
    parser.add_argument("--force", action="store_true", help="re-train even if a cached copy exists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(args) -> "PretrainConfig":
    """The :class:`PretrainConfig` described by parsed CLI arguments."""
    from llm_rl.pretrain import PretrainConfig

    return PretrainConfig(task=args.task, task_knobs=parse_kv(args.knob, "--knob"), steps=args.steps,
                          batch_size=args.batch_size, lr=args.lr, wrong_frac=args.wrong_frac,
                          misconception_frac=args.misconception_frac, seed=args.seed,
                          split_seed=args.split_seed, n_train=args.n_train, n_val=args.n_val, model_sizes=parse_kv(args.model_size, "--model-size"))


def run(args) -> int:
    """Pretrain (or reuse the cache) and print the model path and validation metrics as JSON."""
    quiet_transformers()
    from llm_rl.pretrain import get_or_pretrain

    try:
        cfg = config_from_args(args)
    except ValueError as err:
        return fail("pretrain", err)
    path, info = get_or_pretrain(cfg, force=args.force, progress=not args.no_progress)
    print(json.dumps({"model": str(path), "cached": info["cached"], "val": info["val"]}, indent=2))
    return 0
