"""Wall time of ``entropy-mech <command> --help`` for every subcommand (target < 1 s each).

    python benchmarks/help_time.py [--repeats 5]

Each measurement is a fresh ``python -m cli.main <command> --help`` process (interpreter start-up
included, as a user sees it); prints the median and the range of ``--repeats`` runs per command, and
``import torch`` alone for comparison. Timing only: nothing is asserted (tests/test_cli_help.py checks that
no heavy module is imported).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall_seconds(args: list[str], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``python <args>`` (a failing command raises CalledProcessError)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from cli.main import SUBCOMMANDS

    rows = [("python -c 'import torch'", ["-c", "import torch"])]
    rows += [(f"entropy-mech {name} --help", ["-m", "cli.main", name, "--help"]) for name in SUBCOMMANDS]
    print(f"{'command':<36} {'median s':>9} {'min s':>7} {'max s':>7}   ({args.repeats} runs each)")
    for label, argv in rows:
        t = wall_seconds(argv, args.repeats)
        print(f"{label:<36} {statistics.median(t):>9.3f} {min(t):>7.3f} {max(t):>7.3f}")


if __name__ == "__main__":
    main()
