"""``entropy-mech verify``: check every statement of ``theory`` numerically on seeded random
float64 instances (``theory.verify``) and, with ``--symbolic``, derive the core identities with sympy
(``theory.symbolic``). Exits 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import time

from .common import fail

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instances", type=int, default=200,
                        help="random instances per statement (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random instances")
    parser.add_argument("--symbolic", action="store_true", help="also derive the identities with sympy")
    parser.add_argument("--latex", action="store_true", help="print symbolic statements as LaTeX")
    parser.add_argument("--max-n", type=int, default=4, help="largest action count for --symbolic (2..6)")


def run(args: argparse.Namespace) -> int:
    """Print the table; exit 0 when every statement passes, 1 on a FAIL, 2 on a bad option."""
    from theory.verify import format_table, run_checks  # imports torch: not needed for --help

    if args.instances < 1:
        return fail("verify", ValueError(f"--instances must be >= 1, got {args.instances}"))
    if args.symbolic and not 2 <= args.max_n <= 6:
        return fail("verify", ValueError(f"--max-n must be in 2..6 (actions of the symbolic softmax), "
                                         f"got {args.max_n}"))
    t0 = time.perf_counter()
    rows = run_checks(args.instances, args.seed)
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} numeric statements PASS "
          f"({time.perf_counter() - t0:.1f} s, float64, seed {args.seed})")
    if args.symbolic:
        import sympy as sp

        from theory.symbolic import check_all

        print("\nSymbolic derivations: each identity is derived from H = -sum pi log pi for an n-action")
        print("softmax and lhs - rhs is simplified; PASS means it simplified to exactly 0.")
        checks = check_all(range(2, args.max_n + 1))
        for name in dict.fromkeys(c.name for c in checks):
            group = [c for c in checks if c.name == name]
            stmt = group[0].statement
            shown = sp.latex(stmt) if args.latex else sp.pretty(stmt, use_unicode=False, num_columns=200)
            print(f"\n[{group[0].reference}] {name}:\n{shown}")
            print("  " + ", ".join(f"n={c.n}: {'PASS' if c.holds else 'FAIL'}" for c in group))
            failed += [c for c in group if not c.holds]
    return 1 if failed else 0
