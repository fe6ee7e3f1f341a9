"""``entropy-mech simulate``: run a tabular softmax world, record predicted vs observed entropy change.

Examples::

    entropy-mech simulate --world bandit --rule pg --steps 500 --instances 32 --lr 0.4 --out runs/bandit-pg
    entropy-mech simulate --world tabular_lm --rule grpo --objective clip_cov --optimizer adam \\
        --lr 0.05 --samples 8 --epochs 4 --steps 200 --seeds 16 --out runs/lm-clipcov

Writes ``config.json``, ``arrays.npz`` and ``summary.json`` into ``--out`` (see :mod:`simulators.run`)
and prints the summary. Invalid names fail before anything runs, listing the valid choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from simulators.config import ADV_NORMS, DTYPES, INITS, OPTIMIZERS, REWARD_NOISES, RULE_NAMES, WORLD_NAMES, SimConfig


def _objective_names() -> list[str]:
    try:
        from theory import objectives
    except ImportError:
        return []
    names = getattr(objectives, "OBJECTIVES", None) or getattr(objectives, "OBJECTIVE_NAMES", None)
    return sorted(names) if names is not None else []


def _kv(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``simulate`` options (defaults come from :class:`SimConfig`)."""
    d = SimConfig()
    parser.add_argument("--world", choices=WORLD_NAMES, default=d.world, help="which world to simulate")
    parser.add_argument("--rule", choices=RULE_NAMES, default=d.rule, help="update rule")
    parser.add_argument(
        "--objective",
        default=d.objective,
        help=f"theory.objectives name for --rule grpo ({', '.join(_objective_names()) or 'none available'})",
    )
    parser.add_argument(
        "--objective-arg",
        action="append",
        type=_kv,
        default=[],
        metavar="KEY=VALUE",
        help="objective hyperparameter (repeatable), e.g. --objective-arg eps_high=0.28",
    )
    parser.add_argument("--steps", type=int, default=d.steps, help="outer update steps")
    parser.add_argument("--lr", type=float, default=d.lr, help="step size η / optimiser learning rate")
    parser.add_argument("--instances", type=int, default=d.instances, help="independently drawn worlds")
    parser.add_argument("--seeds", type=int, default=d.seeds, help="replicas per world")
    parser.add_argument("--seed", type=int, default=d.seed, help="generator seed")
    parser.add_argument("--n-actions", type=int, default=d.n_actions, help="actions (bandit/contextual/mdp)")
    parser.add_argument("--n-states", type=int, default=d.n_states, help="states (contextual/mdp)")
    parser.add_argument("--gamma", type=float, default=d.gamma, help="MDP discount")
    parser.add_argument("--vocab", type=int, default=d.vocab, help="tabular LM vocabulary V")
    parser.add_argument("--horizon", type=int, default=d.horizon, help="tabular LM response length L")
    parser.add_argument(
        "--match-threshold", type=int, default=None, help="tabular LM: matches to the target for reward 1"
    )
    parser.add_argument(
        "--reward-noise", choices=REWARD_NOISES, default=d.reward_noise, help="sampled bandit rewards"
    )
    parser.add_argument("--init", choices=INITS, default=d.init, help="initial logits")
    parser.add_argument("--init-scale", type=float, default=d.init_scale, help="std of random initial logits")
    parser.add_argument("--tau", type=float, default=d.tau, help="entropy temperature of entropy_npg")
    parser.add_argument("--samples", type=int, default=d.samples, help="samples per state / group size G")
    parser.add_argument("--groups", type=int, default=d.groups, help="tabular LM: groups per step")
    parser.add_argument("--loss-agg", default=d.loss_agg, help="theory.aggregation mode for grpo")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="grpo optimiser")
    parser.add_argument("--epochs", type=int, default=d.epochs, help="grpo inner epochs per batch")
    parser.add_argument("--adv-norm", choices=ADV_NORMS, default=d.adv_norm, help="grpo group advantage")
    parser.add_argument("--dtype", choices=DTYPES, default=d.dtype)
    parser.add_argument("--device", default=d.device, help="torch device, e.g. cpu or cuda")
    parser.add_argument("--record-logits", action="store_true", help="also save the logits trajectory")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the per-state tensors are small and OpenMP threads "
        "only add overhead; 0 keeps torch's default)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--out", required=True, help="run directory to write")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Build (and validate) the :class:`SimConfig` from parsed arguments."""
    fields = {f.name for f in dataclasses.fields(SimConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["objective_kwargs"] = dict(args.objective_arg)
    return SimConfig(**values)


def run(args: argparse.Namespace) -> int:
    """Validate, simulate with a progress bar, save to ``--out``, print the summary. Returns 0, or 2 on a
    bad setting (message on stderr)."""
    from simulators.run import run_to_dir

    try:
        config = config_from_args(args)
        if config.rule == "grpo":
            from theory.objectives import get_objective

            get_objective(config.objective)
    except (ValueError, KeyError, ImportError) as err:
        print(f"entropy-mech simulate: {err}", file=sys.stderr)
        return 2
    if args.threads < 0:
        print("entropy-mech simulate: --threads must be >= 0", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        result = run_to_dir(config, args.out, progress=not args.no_progress)
    except ValueError as err:
        print(f"entropy-mech simulate: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary, indent=2))
    print(f"wrote {args.out}")
    return 0
