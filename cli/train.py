"""``entropy-mech train``: GRPO-family RL training (see :mod:`llm_rl.trainer` for the loop).

Examples::

    entropy-mech train --task arithmetic --objective grpo --steps 60 --out runs/grpo
    entropy-mech train --task arithmetic --objective kl_cov --objective-param kl_ratio=0.002 --out runs/klcov
    entropy-mech train --task arithmetic --objective clip_cov --objective-param clip_ratio=0.0002 \\
        --out runs/clipcov
    entropy-mech train --config runs/grpo/config.json --seed 1 --out runs/grpo-s1   # same settings, seed 1
    entropy-mech train --out runs/grpo --resume                  # continue exactly where it stopped
    entropy-mech train --out runs/grpo --resume --extend --steps 400   # train a finished run further
    entropy-mech train --task arithmetic --out runs/grpo --overwrite   # replace the run in runs/grpo
    torchrun --nproc_per_node=2 -m cli.main train --task arithmetic --objective kl_cov --out runs/ddp

Every :class:`llm_rl.config.TrainConfig` field, nested sections included, is an option: the field name with
dashes, except the shared-vocabulary names of :data:`VOCABULARY`. ``--config FILE`` (YAML/JSON, nested
like ``TrainConfig.to_dict()``; a run's ``config.json`` loads as is) sets any of them; options given on
the command line win. Without ``--model`` the default tiny Qwen2 model is warm-started on the task
(``entropy-mech pretrain`` defaults; cached) and used as the starting policy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import fail, quiet_transformers
from .config_args import ConfigArgs, add_config_epilog
from .config_file import merge

# dotted TrainConfig field -> (canonical flag, old spellings kept as hidden aliases); the names shared with
# `simulate` are the same there. rollout.temperature is prefixed: `eval --temperature` (an old spelling of
# --val-temperature) is the validation temperature.
VOCABULARY: dict[str, tuple[str, tuple[str, ...]]] = {
    "objective.name": ("--objective", ()),
    "objective.params": ("--objective-param", ("--param",)),
    "objective.agg_mode": ("--loss-agg-mode", ("--agg-mode",)),
    "optim.num_minibatches": ("--num-minibatches", ("--minibatches",)),
    "data.task_knobs": ("--knob", ()),
    "rollout.temperature": ("--rollout-temperature", ()),
}


def config_args() -> ConfigArgs:
    """The :class:`ConfigArgs` of ``train`` (TrainConfig <-> options and --config files)."""
    from llm_rl.config import ADVANTAGE_ESTIMATORS, AGG_MODES, REF_KL_ESTIMATORS, RUN_INFO_KEYS, TrainConfig
    from llm_rl.objective_choice import OBJECTIVE_ALIASES
    from llm_rl.tasks import TASKS

    from theory.names import KNOWN_OBJECTIVES  # torch-free (the registry, theory.objectives, imports torch)

    objectives = sorted(set(KNOWN_OBJECTIVES) | set(OBJECTIVE_ALIASES))
    aliases_text = ", ".join(f"{a} = {t}" for a, t in OBJECTIVE_ALIASES.items())
    return ConfigArgs(
        TrainConfig,
        flags={k: flag for k, (flag, _) in VOCABULARY.items()},
        aliases={k: old for k, (_, old) in VOCABULARY.items() if old},
        choices={"objective.advantage": ADVANTAGE_ESTIMATORS, "objective.agg_mode": AGG_MODES,
                 "objective.ref_kl_estimator": REF_KL_ESTIMATORS},
        extra_help={"data.task": f"one of: {', '.join(sorted(TASKS))}",
                    "objective.name": f"one of: {', '.join(objectives)} ({aliases_text})"},
        ignore_keys=RUN_INFO_KEYS, required=("data.task",),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech train``: one per :class:`TrainConfig` field (help and defaults
    from the dataclass), ``--config``, and the run options ``--out``, ``--resume``, ``--no-progress``."""
    spec = config_args()
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint, with its saved config.json (a "
                             "setting given that differs from it is an error naming it)")
    parser.add_argument("--extend", action="store_true",
                        help="with --resume: allow a larger --steps than the saved run's (train it further)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in --out and start a new one (without it, or "
                             "--resume, a folder holding a run is refused)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    spec.add_to(parser, section_titles={
        "data": "data (DataConfig: config key data.*)", "rollout": "rollout (RolloutConfig: rollout.*)",
        "objective": "objective (ObjectiveConfig: objective.*)", "optim": "optim (OptimConfig: optim.*)"})
    add_config_epilog(parser, spec.epilog())


def build_config(args):
    """TrainConfig from parsed arguments: defaults < ``--config`` file < command line; validated before
    any model is loaded, then the default model is warm-started when no model is given."""
    from llm_rl.config import TrainConfig
    from llm_rl.objective_choice import resolve_objective_name

    spec = config_args()
    values = spec.values(args)  # raises when --task is neither given nor in the --config file
    data = values["data"]
    resolve_objective_name(values.get("objective", {}).get("name", "grpo"))  # fail fast, listing the names
    # file paths are saved in config.json: make them absolute so --resume / eval work from any directory
    if data.get("task_knobs"):
        data["task_knobs"] = {k: str(Path(v).resolve()) if k.endswith("_path") and isinstance(v, str) and v
                              else v for k, v in data["task_knobs"].items()}
    if values.get("model"):
        values["model"] = str(Path(values["model"]).resolve())
    cfg: TrainConfig = spec.build(values)
    from llm_rl.model import resolve_device

    resolve_device(cfg.device)  # an unavailable device fails before the warm start
    if not cfg.model:
        import os

        from llm_rl.pretrain import PretrainConfig, cache_path, get_or_pretrain

        d = cfg.data
        pcfg = PretrainConfig(task=d.task, task_knobs=d.task_knobs, split_seed=d.split_seed,
                              n_train=d.n_train, n_val=d.n_val)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (cache_path(pcfg) / "pretrain.json").is_file():
            raise ValueError("under torchrun, warm-start first (`entropy-mech pretrain --task ...`) "
                             "or pass --model")
        path, info = get_or_pretrain(pcfg, progress=not args.no_progress)
        print(f"starting policy: {path} ({'cached' if info['cached'] else 'pretrained now'}; "
              f"val {json.dumps(info['val'])})", file=sys.stderr)
        cfg.model = str(path)
    return cfg


def resumed_config(args):
    """With ``--resume``: the run's saved config with the options given on the command line applied (the
    trainer then refuses any that differ from the saved run, naming them)."""
    from llm_rl.resume import saved_config

    if getattr(args, "config", None):
        raise ValueError("--resume continues the saved config.json of --out; --config cannot replace it")
    saved = saved_config(args.out)
    spec = config_args()
    return spec.build(merge(saved.to_dict(), spec.overrides(args)))


def run(args) -> int:
    """Train; exit 0 on success, 2 on bad arguments or a refused run folder (before any model is loaded),
    1 when training fails (a non-finite loss or gradient, or no optimizer update at all)."""
    quiet_transformers()
    from llm_rl.distributed import shutdown_distributed
    from llm_rl.resume import NoUpdatesError
    from llm_rl.trainer import NonFiniteLossError, Trainer

    try:
        if args.extend and not args.resume:
            raise ValueError("--extend continues a saved run: use it with --resume")
        cfg = resumed_config(args) if args.resume else build_config(args)
        trainer = Trainer(cfg, args.out, resume=args.resume, overwrite=args.overwrite, extend=args.extend,
                          progress=not args.no_progress)
    except (ValueError, OSError) as err:
        return fail("train", err)
    try:
        records = trainer.train()
    except (NonFiniteLossError, NoUpdatesError) as err:  # every rank sees it (the checks are all-reduced)
        shutdown_distributed()
        print(f"entropy-mech train: error: {err}", file=sys.stderr)
        return 1
    shutdown_distributed()  # not on other errors: a barrier could wait forever for a crashed rank
    last = [r for r in records if "val/acc" in r]
    if last:
        print(json.dumps({k: v for k, v in last[-1].items() if k.startswith("val/") or k == "step"}))
    return 0
