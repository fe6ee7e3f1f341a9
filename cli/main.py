"""The one command-line entry point, ``entropy-mech``.

It sits in ``cli``, the top layer, the only one allowed to import every other one
(theory, rundir <- simulators, llm_rl <- figures <- reproduce <- cli). Each subcommand is a module exposing
``add_arguments(parser)`` and ``run(args) -> int``; it is imported only when that subcommand runs,
so ``entropy-mech verify`` never pays for importing transformers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module implementing it, one-line description)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "verify": ("cli.verify", "check every theorem of the paper numerically (and symbolically)"),
    "simulate": ("cli.simulate",
                 "run a tabular softmax world and record predicted vs observed entropy change"),
    "fit": ("cli.fit", "fit the entropy-performance law R = -a exp(H) + b to training logs"),
    "pretrain": ("cli.pretrain", "supervised warm start of the small default model on a synthetic task"),
    "train": ("cli.train", "GRPO-family RL training of a causal LM"),
    "eval": ("cli.eval", "evaluate a checkpoint on a task's validation split"),
    "diagnose": ("cli.diagnose", "summarise the entropy-dynamics diagnostics of a run"),
    "figures": ("cli.figures", "draw the paper's figures from existing run directories"),
    "reproduce": ("cli.reproduce", "run the whole story and write report.md with figures"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: entropy-mech <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in SUBCOMMANDS.items()]
    lines += ["", "Run `entropy-mech <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``entropy-mech <command> ...`` to the module implementing the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        print(f"entropy-mech: unknown command {name!r}; choose one of: {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    module_name, description = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            print(f"entropy-mech: the {name!r} command is not available in this version", file=sys.stderr)
            return 2
        raise
    from cli.common import HelpFormatter  # shows every option's default

    parser = argparse.ArgumentParser(prog=f"entropy-mech {name}", description=description,
                                     formatter_class=HelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except BrokenPipeError:  # e.g. `entropy-mech fit ... --json | head`: stop quietly, as cat would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
