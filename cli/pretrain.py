"""``entropy-mech pretrain``: supervised warm start of the default model (cached by config hash).

Example::

    entropy-mech pretrain --task arithmetic
    entropy-mech pretrain --task countdown --knob n_numbers=3 --steps 1200 --wrong-frac 0.5
    entropy-mech pretrain --config ~/.cache/entropy-mechanism/pretrain/arithmetic-<hash>/pretrain.json \\
        --seed 1

Every :class:`llm_rl.pretrain.PretrainConfig` field is an option (the field name with dashes; the dict
fields are the repeatable ``--knob`` and ``--model-size``); ``--config FILE`` (YAML/JSON, or a cached
warm start's ``pretrain.json``) sets any of them, options given on the command line win.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .common import fail, quiet_transformers
from .config_args import ConfigArgs, add_config_epilog

if TYPE_CHECKING:
    from llm_rl.config import PretrainConfig

# PretrainConfig field -> canonical flag (the same knobs as `train`'s --knob)
VOCABULARY: dict[str, str] = {"task_knobs": "--knob", "model_sizes": "--model-size"}


def config_args() -> ConfigArgs:
    """The :class:`ConfigArgs` of ``pretrain`` (PretrainConfig <-> options and --config files)."""
    from llm_rl.config import PretrainConfig
    from llm_rl.tasks import TASKS

    return ConfigArgs(PretrainConfig, flags=VOCABULARY,
                      extra_help={"task": f"one of: {', '.join(sorted(TASKS))}"}, required=("task",))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech pretrain``: one per :class:`PretrainConfig` field, ``--config``,
    ``--force`` and ``--no-progress``."""
    spec = config_args()
    spec.add_to(parser)
    parser.add_argument("--force", action="store_true", help="re-train even if a cached copy exists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_epilog(parser, spec.epilog())


def config_from_args(args) -> PretrainConfig:
    """The :class:`PretrainConfig` described by parsed CLI arguments: defaults < ``--config`` < options."""
    return config_args().resolve(args)[1]


def run(args) -> int:
    """Pretrain (or reuse the cache) and print the model path and validation metrics as JSON."""
    quiet_transformers()
    from llm_rl.pretrain import get_or_pretrain

    try:
        cfg = config_from_args(args)
    except (ValueError, OSError) as err:
        return fail("pretrain", err)
    path, info = get_or_pretrain(cfg, force=args.force, progress=not args.no_progress)
    print(json.dumps({"model": str(path), "cached": info["cached"], "val": info["val"]}, indent=2))
    return 0
