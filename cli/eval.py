"""``entropy-mech eval``: accuracy and entropy of a model on a task's validation split.

Example::

    entropy-mech eval --task arithmetic --model runs/grpo/model
    entropy-mech eval --task arithmetic --run runs/grpo          # same, reads the run's config

The options shared with ``train`` have its names and defaults (``--knob``, ``--split-seed``, ``--n-val``,
``--val-samples``, ``--val-temperature``, ``--seed``, ``--device``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .common import fail, parse_kv, quiet_transformers
from .config_args import add_config_epilog, add_hidden_alias

#: old spelling -> canonical flag (the canonical names are `train`'s)
ALIASES = {"--samples": "--val-samples", "--temperature": "--val-temperature"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech eval``."""
    from llm_rl.config import DataConfig, TrainConfig
    from llm_rl.tasks import TASKS

    d = DataConfig()
    # TrainConfig's field defaults, without building one (that validates the objective, which imports torch)
    t = argparse.Namespace(**{f.name: f.default for f in dataclasses.fields(TrainConfig)
                              if f.default is not dataclasses.MISSING})
    parser.add_argument("--task", help=f"task name: {', '.join(sorted(TASKS))} (default: the run's task)")
    parser.add_argument("--knob", action="append", metavar="KEY=VALUE",
                        help="task difficulty knob (repeatable; default: the run's knobs with --run)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model directory (save_pretrained format)")
    src.add_argument("--run", help="run directory written by `entropy-mech train` (uses RUN/model)")
    parser.add_argument("--split-seed", type=int, default=d.split_seed,
                        help="seed of the splits (with --run: the run's)")
    parser.add_argument("--n-val", type=int, default=d.n_val,
                        help="validation prompts (with --run: the run's)")
    samples = dict(dest="val_samples", type=int, default=t.val_samples)
    parser.add_argument("--val-samples", **samples, help="samples per prompt for the sampled accuracy")
    add_hidden_alias(parser, "--samples", **samples)
    temperature = dict(dest="val_temperature", type=float, default=t.val_temperature)
    parser.add_argument("--val-temperature", **temperature, help="temperature of the sampled accuracy")
    add_hidden_alias(parser, "--temperature", **temperature)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--device", default=t.device, help="auto, cpu, cuda, cuda:N")
    add_config_epilog(parser, "Old spellings still accepted: "
                      + ", ".join(f"{a} = {c}" for a, c in ALIASES.items()) + ".")


def _train_run_config(run_dir) -> dict:
    """The saved config of a finished ``entropy-mech train`` run (ValueError naming what is missing)."""
    path = Path(run_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text())["config"]
    except FileNotFoundError:
        raise ValueError(f"{run_dir} is not a run folder (no config.json)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is unreadable ({err})") from None
    if not isinstance(cfg.get("data"), dict) or "task" not in cfg["data"]:
        raise ValueError(f"{run_dir} is not a run of `entropy-mech train` (a simulator run?): its config has "
                         "no data.task")
    if not (Path(run_dir) / "model" / "config.json").is_file():
        raise ValueError(f"{run_dir} has no final model (model/): the run did not finish; evaluate a "
                         "checkpointed model with --model DIR")
    return cfg


def run(args) -> int:
    """Print the validation metrics as JSON."""
    quiet_transformers()
    from llm_rl.evaluate import evaluate
    from llm_rl.model import load_policy, resolve_device
    from llm_rl.tasks import make_splits, make_task

    try:
        task_name, knobs = args.task, parse_kv(args.knob, "--knob")
        split_seed, n_val = args.split_seed, args.n_val
        model_dir = args.model
        if args.run:
            cfg = _train_run_config(args.run)
            model_dir = str(Path(args.run) / "model")
            task_name = task_name or cfg["data"]["task"]
            knobs = knobs or cfg["data"]["task_knobs"]
            split_seed, n_val = cfg["data"]["split_seed"], cfg["data"]["n_val"]
        if not task_name:
            raise ValueError("--task is required with --model")
        task = make_task(task_name, **knobs)
        _, val = make_splits(task, 1, n_val, split_seed)  # val is drawn first: independent of n_train
        model, tok = load_policy(model_dir, device=resolve_device(args.device))
        res = evaluate(model, tok, task, val, n_samples=args.val_samples, temperature=args.val_temperature,
                       seed=args.seed)
    except (ValueError, OSError) as err:
        return fail("eval", err)
    print(json.dumps({"model": model_dir, "task": task_name, **res}, indent=2))
    return 0
