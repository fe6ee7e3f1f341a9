"""``entropy-mech figures RUN_DIR... --out DIR``: draw the paper's figures from existing run directories.

Example::

    entropy-mech figures runs/* --out figs            # every figure the runs allow
    entropy-mech figures runs/grpo-* --out figs --only collapse law --pdf

Accepts simulator runs (``entropy-mech simulate``) and LLM runs (``entropy-mech train``); which runs feed
which figure is decided by :mod:`figures.draw`. Prints the files written and the figures skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``entropy-mech figures``."""
    from figures import FIGURES  # torch-free (figures.draw is not)

    parser.add_argument("runs", nargs="+", help="run directories (simulator or LLM)")
    parser.add_argument("--out", required=True, help="directory for the figures")
    parser.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES), help="figures to draw")
    parser.add_argument("--pdf", action="store_true", help="also write PDF files")


def run(args: argparse.Namespace) -> int:
    """Draw; exit 0, or 2 on a bad run directory."""
    from figures.draw import draw_all

    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"entropy-mech figures: error: --out {args.out} is a file, not a folder", file=sys.stderr)
        return 2
    try:
        results = draw_all([Path(r) for r in args.runs], args.out, pdf=args.pdf, only=tuple(args.only))
    except ValueError as err:
        print(f"entropy-mech figures: error: {err}", file=sys.stderr)
        return 2
    for name, files in results.figure_files().items():
        print(f"{name}: " + ", ".join(str(p) for p in files))
    if results.skipped:
        print("skipped (no matching runs): " + ", ".join(results.skipped))
    return 0
