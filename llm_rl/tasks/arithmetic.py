"""Multi-step arithmetic with a scratchpad: evaluate ``a op b op c ...`` left to right.

Prompt ``"12+7-5="``; correct response ``"19#14"``: the running results of every step but the last,
separated by ``,``, then ``#`` and the final answer. The verifier reads the integer after the last ``#``.
A plausible wrong solution makes one slip (off by 1, 2 or 10 — a carry/borrow error) at a random step
and then continues correctly from the wrong value. The systematic misconception (used by the warm start to
make the *greedy* answer wrong on some problems, see ``PretrainConfig.misconception_frac``) forgets every
carry and borrow of the units column and always subtracts the smaller number from the larger: ``18+5``
gives 13, ``13-5`` gives 18, ``2-5`` gives 3 and ``3-12`` gives 19 (non-negative operands only).

Difficulty knobs: ``n_terms`` (number of operands), ``max_operand``, ``ops`` (subset of ``"+-*"``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..verifiers import extract_final_int
from .base import Problem, Task

_SLIPS = (-10, -2, -1, 1, 2, 10)


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _apply_misconceived(a: int, op: str, b: int) -> int:
    """``a op b`` by a solver who, for a, b >= 0, drops the units-column carry (+) or borrow (−) and
    always subtracts the smaller number from the larger (``2-5`` gives 3, ``3-12`` gives 19)."""
    if a < 0 or b < 0 or op == "*":
        return _apply(a, op, b)
    if op == "+":
        return a + b - 10 if a % 10 + b % 10 >= 10 else a + b
    hi, lo = max(a, b), min(a, b)
    return hi - lo + 10 if hi % 10 < lo % 10 else hi - lo


@dataclass(frozen=True)
class ArithmeticTask(Task):
    """Left-to-right multi-step arithmetic (see module docstring)."""

    n_terms: int = 3
    """number of operands (>= 2); the scratchpad has n_terms - 1 steps"""
    max_operand: int = 12
    """operands are drawn uniformly from 0..max_operand"""
    ops: str = "+-"
    """allowed operators, a non-empty subset of '+-*'"""

    name = "arithmetic"
    # 55% misconceived (where it changes the answer), 25% one-slip, 20% correct: the greedy answer is wrong
    # on the ~2/3 of problems the misconception affects (default warm start: greedy accuracy 40%, T=1
    # accuracy 38%, entropy 0.37 nats), and RL fixes them
    warm_start_mix = (0.25, 0.55)

    def __post_init__(self):
        if not isinstance(self.n_terms, int) or not 2 <= self.n_terms <= 8:
            raise ValueError(f"n_terms must be an int in [2, 8], got {self.n_terms!r}")
        if not isinstance(self.max_operand, int) or not 1 <= self.max_operand <= 999:
            raise ValueError(f"max_operand must be an int in [1, 999], got {self.max_operand!r}")
        if not self.ops or any(o not in "+-*" for o in self.ops) or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be a non-empty subset of '+-*', got {self.ops!r}")

    @property
    def max_response_chars(self) -> int:  # type: ignore[override]
        return 8 * self.n_terms + 4

    def sample(self, rng: random.Random) -> Problem:
        nums = [rng.randint(0, self.max_operand) for _ in range(self.n_terms)]
        ops = [rng.choice(self.ops) for _ in range(self.n_terms - 1)]
        prompt = str(nums[0]) + "".join(o + str(n) for o, n in zip(ops, nums[1:])) + "="
        steps = self._steps(nums, ops)
        return Problem(prompt, steps[-1], {"nums": tuple(nums), "ops": tuple(ops)})

    def misconceived_solution(self, problem: Problem) -> str | None:
        acc, out = problem.meta["nums"][0], []
        for o, n in zip(problem.meta["ops"], problem.meta["nums"][1:]):
            acc = _apply_misconceived(acc, o, n)
            out.append(acc)
        return None if out[-1] == problem.answer else self._format(out)

    @staticmethod
    def _steps(nums, ops, slip_at: int = -1, slip: int = 0) -> list[int]:
        acc, out = nums[0], []
        for i, (o, n) in enumerate(zip(ops, nums[1:])):
            acc = _apply(acc, o, n) + (slip if i == slip_at else 0)
            out.append(acc)
        return out

    @staticmethod
    def _format(steps: list[int]) -> str:
        return ",".join(str(s) for s in steps[:-1]) + "#" + str(steps[-1])

    def solution(self, problem: Problem, rng: random.Random) -> str:
        return self._format(self._steps(problem.meta["nums"], problem.meta["ops"]))

    def wrong_solution(self, problem: Problem, rng: random.Random) -> str:
        nums, ops = problem.meta["nums"], problem.meta["ops"]
        steps = self._steps(nums, ops, rng.randrange(len(ops)), rng.choice(_SLIPS))
        return self._format(steps)

    def verify(self, problem: Problem, response: str) -> float:
        try:
            return float(extract_final_int(response) == problem.answer)
        except Exception:
            return 0.0
