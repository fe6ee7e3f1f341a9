"""``entropy-mech train``: GRPO-family RL training (see :mod:`llm_rl.trainer` for the loop).

Examples::

    entropy-mech train --task arithmetic --objective grpo --steps 60 --out runs/grpo
    entropy-mech train --task arithmetic --objective kl_cov --param kl_ratio=0.002 --out runs/klcov
    entropy-mech train --task arithmetic --objective clip_cov --param clip_ratio=0.0002 --out runs/clipcov
    entropy-mech train --out runs/grpo --resume                  # continue exactly where it stopped
    torchrun --nproc_per_node=2 -m cli.main train --task arithmetic --objective kl_cov --out runs/ddp

Without ``--model`` the default tiny Qwen2 model is warm-started on the task (``entropy-mech pretrain``
defaults; cached) and used as the starting policy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import fail, parse_kv, quiet_transformers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech train``."""
    from llm_rl.config import (ADVANTAGE_ESTIMATORS, AGG_MODES, REF_KL_ESTIMATORS, DataConfig, OptimConfig,
                         RolloutConfig, TrainConfig)
    from llm_rl.tasks import TASKS

    t, r, o = TrainConfig(), RolloutConfig(), OptimConfig()
    parser.add_argument("--task", help=f"task name: {', '.join(sorted(TASKS))}")
    parser.add_argument("--objective", default="grpo",
                        help="grpo (= ppo_clip), clip_higher, clip_cov, kl_cov, vanilla_pg (default grpo)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--steps", type=int, default=t.steps, help=f"rollout steps (default {t.steps})")
    parser.add_argument("--seed", type=int, default=t.seed, help="run seed")
    parser.add_argument("--model", default="", help="starting model directory (default: cached warm start)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--n-train", type=int, default=DataConfig().n_train, help="training prompts")
    parser.add_argument("--n-val", type=int, default=DataConfig().n_val, help="validation prompts")
    parser.add_argument("--val-samples", type=int, default=t.val_samples, help="samples per val prompt at T=0.6")
    parser.add_argument("--knob", action="append", metavar="KEY=VALUE", help="task difficulty knob (repeatable)")
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="objective hyperparameter, e.g. kl_ratio=0.002 (repeatable)")
    parser.add_argument("--advantage", default="grpo", choices=ADVANTAGE_ESTIMATORS, help="advantage estimator")
    parser.add_argument("--agg-mode", default="token-mean", choices=AGG_MODES, help="loss aggregation")
    parser.add_argument("--entropy-coef", type=float, default=0.0, help="entropy bonus coefficient")
    parser.add_argument("--ref-kl-coef", type=float, default=0.0, help="reference-KL coefficient")
    parser.add_argument("--ref-kl-estimator", default="k3", choices=REF_KL_ESTIMATORS)
    parser.add_argument("--prompts-per-step", type=int, default=r.prompts_per_step, help="groups per step")
    parser.add_argument("--group-size", type=int, default=r.group_size, help="responses per prompt")
    parser.add_argument("--no-dynamic-sampling", action="store_true", help="keep zero-variance groups")
    parser.add_argument("--lr", type=float, default=o.lr, help="AdamW learning rate")
    parser.add_argument("--ppo-epochs", type=int, default=o.ppo_epochs, help="passes over each rollout batch")
    parser.add_argument("--minibatches", type=int, default=o.num_minibatches, help="optimizer steps per epoch")
    parser.add_argument("--micro-batch-size", type=int, default=o.micro_batch_size, help="sequences per backward")
    parser.add_argument("--val-every", type=int, default=t.val_every, help="validate every N steps")
    parser.add_argument("--checkpoint-every", type=int, default=t.checkpoint_every, help="checkpoint every N steps")
    parser.add_argument("--diagnose-every", type=int, default=t.diagnose_every,
                        help="entropy-dynamics diagnostics every N rollout steps (0 = off; see entropy-mech diagnose)")
    parser.add_argument("--diagnose-max-states", type=int, default=t.diagnose_max_states,
                        help="probe token positions per diagnosed step")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard events")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_config(args):
    """TrainConfig from parsed arguments (warm-starting the default model when --model is absent)."""
    from llm_rl.config import DataConfig, ObjectiveConfig, OptimConfig, RolloutConfig, TrainConfig
    from llm_rl.trainer import resolve_objective_name

    if not args.task:
        raise ValueError("--task is required (unless --resume)")
    resolve_objective_name(args.objective)  # fail fast, listing the valid names
    knobs = parse_kv(args.knob, "--knob")
    # file paths are saved in config.json: make them absolute so --resume / eval work from any directory
    knobs = {k: str(Path(v).resolve()) if k.endswith("_path") and isinstance(v, str) and v else v
             for k, v in knobs.items()}
    data = DataConfig(task=args.task, task_knobs=knobs, n_train=args.n_train, n_val=args.n_val)
    cfg = TrainConfig(
        steps=args.steps, seed=args.seed, model=str(Path(args.model).resolve()) if args.model else "",
        device=args.device, val_every=args.val_every,
        val_samples=args.val_samples,
        checkpoint_every=args.checkpoint_every, diagnose_every=args.diagnose_every,
        diagnose_max_states=args.diagnose_max_states, tensorboard=args.tensorboard, data=data,
        rollout=RolloutConfig(prompts_per_step=args.prompts_per_step, group_size=args.group_size,
                              dynamic_sampling=not args.no_dynamic_sampling),
        objective=ObjectiveConfig(name=args.objective, params=parse_kv(args.param, "--param"),
                                  advantage=args.advantage, agg_mode=args.agg_mode, entropy_coef=args.entropy_coef,
                                  ref_kl_coef=args.ref_kl_coef, ref_kl_estimator=args.ref_kl_estimator),
        optim=OptimConfig(lr=args.lr, ppo_epochs=args.ppo_epochs, num_minibatches=args.minibatches,
                          micro_batch_size=args.micro_batch_size),
    )
    if not cfg.model:
        import os

        from llm_rl.pretrain import PretrainConfig, cache_path, get_or_pretrain

        pcfg = PretrainConfig(task=args.task, task_knobs=knobs, split_seed=data.split_seed,
                              n_train=data.n_train, n_val=data.n_val)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (cache_path(pcfg) / "pretrain.json").is_file():
            raise ValueError("under torchrun, warm-start first (`entropy-mech pretrain --task ...`) or pass --model")
        path, info = get_or_pretrain(pcfg, progress=not args.no_progress)
        print(f"starting policy: {path} ({'cached' if info['cached'] else 'pretrained now'}; "
              f"val {json.dumps(info['val'])})", file=sys.stderr)
        cfg.model = str(path)
    return cfg


def run(args) -> int:
    """Train; exit 0 on success, 1 on a non-finite loss, 2 on bad arguments."""
    quiet_transformers()
    from llm_rl.config import TrainConfig
    from llm_rl.distributed import shutdown_distributed
    from llm_rl.trainer import NonFiniteLossError, Trainer

    try:
        if args.resume:
            saved = json.loads((Path(args.out) / "config.json").read_text())["config"]
            cfg = TrainConfig.from_dict(saved)
        else:
            cfg = build_config(args)
        trainer = Trainer(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    except (ValueError, OSError) as err:
        return fail("train", err)
    try:
        records = trainer.train()
    except NonFiniteLossError as err:  # every rank sees it (the check is all-reduced)
        shutdown_distributed()
        print(f"entropy-mech train: {err}", file=sys.stderr)
        return 1
    shutdown_distributed()  # not on other errors: a barrier could wait forever for a crashed rank
    last = [r for r in records if "val/acc" in r]
    if last:
        print(json.dumps({k: v for k, v in last[-1].items() if k.startswith("val/") or k == "step"}))
    return 0
