"""``entropy-mech simulate``: run a tabular softmax world, record predicted vs observed entropy change.

Examples::

    entropy-mech simulate --world bandit --rule pg --steps 500 --instances 32 --lr 0.4 --out runs/bandit-pg
    entropy-mech simulate --world tabular_lm --rule grpo --objective clip_cov --optimizer adam \\
        --lr 0.05 --group-size 8 --ppo-epochs 4 --objective-param clip_ratio=0.2 --steps 200 --seeds 16 \\
        --out runs/lm-clipcov
    entropy-mech simulate --config runs/lm-clipcov/config.json --seed 1 --out runs/lm-clipcov-s1

Every :class:`simulators.config.SimConfig` field is an option (the field name with dashes), except the
shared-vocabulary names of :data:`VOCABULARY`; ``--config FILE`` (YAML/JSON) sets any of them, options
on the command line win. Writes ``config.json``, ``arrays.npz`` and ``summary.json`` into ``--out`` (see
:mod:`simulators.run`) and prints the summary. Invalid names fail before anything runs, listing the
valid choices.
"""

from __future__ import annotations

import argparse
import json
import sys

from simulators import config as sim_config
from simulators.config import SimConfig

from .config_args import ConfigArgs, add_config_epilog

# SimConfig field -> (canonical flag shared with `train`, old spellings kept as hidden aliases)
VOCABULARY: dict[str, tuple[str, tuple[str, ...]]] = {
    "objective_kwargs": ("--objective-param", ("--objective-arg",)),
    "loss_agg": ("--loss-agg-mode", ("--loss-agg",)),
    "epochs": ("--ppo-epochs", ("--epochs",)),
    "samples": ("--group-size", ("--samples",)),
    "advantage": ("--advantage", ("--adv-norm",)),
}
#: values of the old ``--adv-norm`` option (and ``adv_norm`` key of old config files) -> ``advantage``
ADV_NORM_VALUES = {"std": "grpo", "mean": "drgrpo"}


def _objective_names() -> list[str]:
    from theory.names import KNOWN_OBJECTIVES  # torch-free (the registry, theory.objectives, imports torch)

    return sorted(KNOWN_OBJECTIVES)


def _agg_modes() -> tuple[str, ...]:
    from theory.names import AGG_MODES  # torch-free

    return AGG_MODES


def config_args() -> ConfigArgs:
    """The :class:`ConfigArgs` of ``simulate`` (SimConfig <-> options and --config files)."""
    choices = {"world": sim_config.WORLD_NAMES, "rule": sim_config.RULE_NAMES,
               "optimizer": sim_config.OPTIMIZERS, "init": sim_config.INITS,
               "reward_noise": sim_config.REWARD_NOISES, "dtype": sim_config.DTYPES,
               "loss_agg": _agg_modes(), "advantage": getattr(sim_config, "ADVANTAGE_ESTIMATORS", None)}
    names = ", ".join(_objective_names()) or "none available"
    return ConfigArgs(SimConfig, flags={field: flag for field, (flag, _) in VOCABULARY.items()},
                      aliases={field: old for field, (_, old) in VOCABULARY.items()}, choices=choices,
                      value_aliases={"--adv-norm": ADV_NORM_VALUES},
                      legacy_keys={"adv_norm": ("advantage", ADV_NORM_VALUES)},  # configs saved before
                      extra_help={"objective": f"one of: {names}"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``simulate`` options: one per :class:`SimConfig` field (help and defaults from the
    dataclass), ``--config``, and the run options ``--out``, ``--threads``, ``--no-progress``."""
    spec = config_args()
    parser.add_argument("--out", required=True, help="run directory to write")
    spec.add_to(parser)
    run_opts = parser.add_argument_group("run (not part of the config)")
    run_opts.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the per-state tensors are small and OpenMP threads "
        "only add overhead; 0 keeps torch's default)",
    )
    run_opts.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run_opts.add_argument("--overwrite", action="store_true",
                          help="delete the run already in --out first (without it such a folder is refused)")
    add_config_epilog(parser, spec.epilog())


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Build (and validate) the :class:`SimConfig`: defaults < ``--config`` file < command line."""
    return config_args().resolve(args)[1]


def run(args: argparse.Namespace) -> int:
    """Validate, simulate with a progress bar, save to ``--out``, print the summary. Returns 0, or 2 on a
    bad setting (message on stderr)."""
    from simulators.run import run_to_dir

    try:
        config = config_from_args(args)
        if config.rule == "grpo":
            from theory.objectives import get_objective

            get_objective(config.objective)
    except (ValueError, KeyError, ImportError, OSError) as err:
        print(f"entropy-mech simulate: error: {err}", file=sys.stderr)
        return 2
    if args.threads < 0:
        print("entropy-mech simulate: error: --threads must be >= 0", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        result = run_to_dir(config, args.out, progress=not args.no_progress, overwrite=args.overwrite)
    except ValueError as err:
        print(f"entropy-mech simulate: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary, indent=2))
    print(f"wrote {args.out}")
    return 0
