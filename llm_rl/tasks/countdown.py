"""Countdown: combine the given numbers with ``+ - * /`` and parentheses to reach a target.

Prompt ``"3,5,7>22:"``; a correct response is an expression such as ``"3*5+7"`` using each given number
at most as often as it is given (not every number has to be used) and evaluating exactly to the target.
Verification parses the response with :func:`llm_rl.verifiers.safe_eval` (an AST walker, never ``eval``).
Problems are built backwards from a random expression over all the numbers, so each has a solution; a
plausible wrong solution is a well-formed expression over the same numbers with a different value.

Difficulty knobs: ``n_numbers``, ``max_number``, ``max_target``, ``ops``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from ..verifiers import safe_eval
from .base import Problem, Task

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _random_expr(nums: list[int], ops: str, rng: random.Random) -> str:
    """Random binary expression over ``nums`` in the given order, printed with minimal parentheses."""
    # each item: (text, precedence of its top operator, 3 for a literal)
    items = [(str(n), 3) for n in nums]
    while len(items) > 1:
        i = rng.randrange(len(items) - 1)
        (lt, lp), (rt, rp) = items[i], items[i + 1]
        op = rng.choice(ops)
        p = _PREC[op]
        if lp < p:
            lt = f"({lt})"
        if rp < p or (rp == p and op in "-/"):  # right operand of - or / needs parens at equal precedence
            rt = f"({rt})"
        items[i:i + 2] = [(f"{lt}{op}{rt}", p)]
    return items[0][0]


@dataclass(frozen=True)
class CountdownTask(Task):
    """Reach the target from the given numbers (see module docstring)."""

    n_numbers: int = 3
    """how many numbers are given (2..6)"""
    max_number: int = 9
    """numbers are drawn from 1..max_number"""
    max_target: int = 99
    """targets are integers in 0..max_target"""
    ops: str = "+-*"
    """operators used to build problems, a non-empty subset of '+-*/'"""

    name = "countdown"

    def __post_init__(self):
        if not isinstance(self.n_numbers, int) or not 2 <= self.n_numbers <= 6:
            raise ValueError(f"n_numbers must be an int in [2, 6], got {self.n_numbers!r}")
        if not isinstance(self.max_number, int) or not 2 <= self.max_number <= 100:
            raise ValueError(f"max_number must be an int in [2, 100], got {self.max_number!r}")
        if not isinstance(self.max_target, int) or not 1 <= self.max_target <= 10_000:
            raise ValueError(f"max_target must be an int in [1, 10000], got {self.max_target!r}")
        if not self.ops or any(o not in "+-*/" for o in self.ops) or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be a non-empty subset of '+-*/', got {self.ops!r}")

    @property
    def max_response_chars(self) -> int:  # type: ignore[override]
        return 6 * self.n_numbers + 4

    def sample(self, rng: random.Random) -> Problem:
        while True:
            nums = [rng.randint(1, self.max_number) for _ in range(self.n_numbers)]
            expr = _random_expr(nums, self.ops, rng)
            value = safe_eval(expr)[0]
            if value.denominator == 1 and 0 <= value <= self.max_target:
                break
        target = int(value)
        prompt = ",".join(map(str, nums)) + ">" + str(target) + ":"
        return Problem(prompt, target, {"nums": tuple(nums), "expr": expr})

    def solution(self, problem: Problem, rng: random.Random) -> str:
        return problem.meta["expr"]

    def wrong_solution(self, problem: Problem, rng: random.Random) -> str:
        nums = list(problem.meta["nums"])
        for _ in range(100):
            rng.shuffle(nums)
            expr = _random_expr(nums, self.ops, rng)
            if self.verify(problem, expr) == 0.0:
                return expr
        return "+".join(map(str, nums)) + "+1"  # always wrong: uses a number that may not exist/overshoots

    def verify(self, problem: Problem, response: str) -> float:
        try:
            parsed = safe_eval(response.strip())
            if parsed is None:
                return 0.0
            value, literals = parsed
            if Counter(literals) - Counter(problem.meta["nums"]):
                return 0.0  # used a number not given, or more often than given
            return float(value == Fraction(problem.answer))
        except Exception:
            return 0.0
