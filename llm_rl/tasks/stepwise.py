"""Stepwise arithmetic: a reasoning-length response, one written equation per step and a boxed answer.

Prompt ``"12+7-5+8+3="`` (as :mod:`llm_rl.tasks.arithmetic`, evaluated left to right); the correct response
writes out every step as an equation, then the final answer in ``\\boxed{}``. In the plain format
(``variety=False``) each step ends with ``;``::

    12+7=19;19-5=14;14+8=22;22+3=25;\\boxed{25}

(``;`` separates the steps because the default character tokenizer, :mod:`llm_rl.tokenizer`, has no
newline.) By default (``variety=True``) every written step draws, independently and uniformly, a prefix
from :data:`PREFIXES`, the operand order of a commutative step (``7+12=19``), an optional space on each side
of the operator and of ``=``, and its separator from :data:`SEPARATORS`, e.g.::

    >7 + 12=19,19-5 = 14|#14+ 8=22;3+22 =25:\\boxed{25}

The verifier ignores all of it; with ``style_signal=0`` the correct, slipped and misconceived responses draw
the same variety, so a warm start is uncertain at every step without that uncertainty telling right from
wrong. In the plain format most characters are copies (previous result, next operand) and a warm start's T=1
token entropy is only ~0.05 nats; with variety it is ~0.5 nats (measured: 1500-step warm start, greedy
accuracy 41%, T=1 accuracy 28%, entropy 0.50 nats, GRPO raised greedy accuracy 34% -> 61% in 40 steps). With
the default knobs (5 operands in 0..20, ``+-``) a response is ~39-72 tokens of the character tokenizer with
``<eos>`` (mean ~55; plain: 34-57, mean ~44), and prompt plus response fit the default model's 128 positions;
larger knobs may need ``--model-size max_positions=...`` (:attr:`max_response_chars` is a worst-case bound).
The verifier reads only the integer in the last ``\\boxed{}`` (:func:`llm_rl.verifiers.extract_boxed_int`):
the written steps are not checked, as with an outcome reward.

A plausible wrong solution slips once (off by 1, 2 or 10: a carry/borrow error) in the result of a random
step and continues correctly from the wrong value, so the slipped equation is the only false one. The
systematic misconception (:meth:`StepwiseTask.misconceived_solution`, used by the warm start to make the
*greedy* answer wrong on many problems) is that of the arithmetic task, applied at every step: every carry
and borrow of the units column is forgotten and a subtraction always takes the smaller number from the
larger (``18+5=13``, ``13-5=18``, ``2-5=3``; non-negative operands only, products are right). With the
default knobs it changes the final answer on ~87% of problems, and every step it touches is a visibly false
equation that RL can learn to correct.

Difficulty knobs: ``n_terms`` (operands; ``n_terms - 1`` written steps), ``max_operand``, ``ops``
(subset of ``"+-*"``).

Surface knobs: ``variety`` (default True; False gives the plain format) and ``style_signal`` (in [0, 1],
default 0.6, used only with ``variety``), which makes the surface *informative*, as in real reasoning LMs
where some phrasings go with correct reasoning: every surface choice has a tidy half (:data:`TIDY`: prefix
``""``/``#``, separator ``;``/``,``, natural operand order, no space) and an untidy half (``>``/``?``,
``:``/``|``, swapped order, a space); a correct response takes the tidy half with probability
``(1 + style_signal) / 2``, a slipped or misconceived one with probability ``(1 - style_signal) / 2``
(uniformly within the half). 0 gives exactly the uniform draws above; 1 separates the halves completely.
The surface still depends only on the kind of response and the rng, so a warm start stays reproducible.
Measured with ``style_signal=0.6`` (1500-step warm start: greedy accuracy 24%, T=1 accuracy 34%, entropy
0.41 nats, mean response 54 tokens; then GRPO, 60 steps, lr 1e-4, 8x8 rollouts): greedy accuracy rose
20% -> 64% (most of it within 10 steps) while the training entropy fell 0.42 -> 0.375 nats (-10.5%; at lr
3e-4: -20%, but accuracy only 20% -> 33%): a correct response's surface is still random within its half and
tidy only with probability 0.8, so collapsing onto the correct-looking surface removes part of the entropy.
``style_signal=0.9`` separates more but its warm start's entropy is 0.25 nats (greedy 18%), below the
0.3 nats a warm start should keep; 0.6 is the default: the warm start is uncertain (>= 0.3 nats), its greedy
answer is usually wrong, and RL both raises accuracy and lowers entropy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..verifiers import extract_boxed_int
from .arithmetic import _apply, _apply_misconceived
from .base import Problem, Task

_SLIPS = (-10, -2, -1, 1, 2, 10)
#: optional step prefixes and step separators of the ``variety`` format (characters of the ALPHABET)
PREFIXES = ("", "#", ">", "?")
SEPARATORS = (";", ",", ":", "|")
#: the (tidy, untidy) halves of the prefixes and separators under ``style_signal``; the tidy operand order is
#: the natural one (running value first), the untidy one swapped; a tidy optional space is "", untidy " "
TIDY = {"prefix": (("", "#"), (">", "?")), "separator": ((";", ","), (":", "|"))}


@dataclass(frozen=True)
class StepwiseTask(Task):
    """Left-to-right multi-step arithmetic written out step by step (see module docstring)."""

    n_terms: int = 5
    """number of operands (2..10); the response writes n_terms - 1 equations"""
    max_operand: int = 20
    """operands are drawn uniformly from 0..max_operand (1..999)"""
    ops: str = "+-"
    """allowed operators, a non-empty subset of '+-*'"""
    variety: bool = True
    """draw a random surface per written step (prefix, operand order of '+'/'*', spaces around the operator
    and '=', separator; see the module docstring); False: the plain ``a+b=c;`` format"""
    style_signal: float = 0.6
    """in [0, 1]: how much the ``variety`` surface tells right from wrong. Each surface choice (prefix,
    operand order, each space, separator) takes its tidy half (:data:`TIDY`) with probability
    ``(1 + style_signal) / 2`` in a correct response and ``(1 - style_signal) / 2`` in a slipped or
    misconceived one, uniformly within the half; 0: the uniform draws of ``variety`` (no signal); ignored
    when ``variety`` is False"""

    name = "stepwise"
    # 50% misconceived (where it changes the answer), 20% one-slip, 30% correct: greedy answers follow the
    # misconception where it applies (~87% of problems), sampled ones are correct often enough for GRPO
    warm_start_mix = (0.2, 0.5)

    def __post_init__(self):
        if not isinstance(self.n_terms, int) or isinstance(self.n_terms, bool) or not 2 <= self.n_terms <= 10:
            raise ValueError(f"n_terms must be an int in [2, 10], got {self.n_terms!r}")
        if (not isinstance(self.max_operand, int) or isinstance(self.max_operand, bool)
                or not 1 <= self.max_operand <= 999):
            raise ValueError(f"max_operand must be an int in [1, 999], got {self.max_operand!r}")
        if (not isinstance(self.ops, str) or not self.ops or any(o not in "+-*" for o in self.ops)
                or len(set(self.ops)) != len(self.ops)):
            raise ValueError(f"ops must be a non-empty subset of '+-*', got {self.ops!r}")
        if not isinstance(self.variety, bool):
            raise ValueError(f"variety must be a bool, got {self.variety!r}")
        if (not isinstance(self.style_signal, (int, float)) or isinstance(self.style_signal, bool)
                or not 0.0 <= self.style_signal <= 1.0):
            raise ValueError(f"style_signal must be a number in [0, 1], got {self.style_signal!r}")
        # surface draws of misconceived_solution when the caller passes no rng (it has none in Task's API):
        # an explicitly seeded generator owned by this task instance, so a warm start is reproducible
        object.__setattr__(self, "_surface_rng", random.Random("stepwise/surface"))

    @property
    def max_response_chars(self) -> int:  # type: ignore[override]
        """Exact worst-case response length: each running value has at most ``d`` characters (sign
        included, ``|value| <= max_operand ** n_terms`` with ``*``, else ``n_terms * max_operand``, plus
        slips of 10 per step), so a step ``A op B=C;`` has at most ``2d + len(max_operand) + 3``."""
        m = self.max_operand
        bound = (m ** self.n_terms if "*" in self.ops else self.n_terms * m) + 10 * self.n_terms
        d = len(str(bound)) + 1
        extra = 5 if self.variety else 0  # a one-character prefix and 4 optional spaces
        return (self.n_terms - 1) * (2 * d + len(str(m)) + 3 + extra) + len("\\boxed{}") + d

    def sample(self, rng: random.Random) -> Problem:
        nums = [rng.randint(0, self.max_operand) for _ in range(self.n_terms)]
        ops = [rng.choice(self.ops) for _ in range(self.n_terms - 1)]
        prompt = str(nums[0]) + "".join(o + str(n) for o, n in zip(ops, nums[1:])) + "="
        acc = nums[0]
        for o, n in zip(ops, nums[1:]):
            acc = _apply(acc, o, n)
        return Problem(prompt, acc, {"nums": tuple(nums), "ops": tuple(ops)})

    def _write(self, nums, ops, results, rng: random.Random, correct: bool = True) -> str:
        """``"a op b=r1;r1 op c=r2;...;\\boxed{r_last}"`` for the given step results; with ``variety`` each
        step's surface is drawn from ``rng``: uniformly when ``style_signal == 0`` (the same draws whatever
        the results), else each choice takes the half that matches ``correct`` (correct: the tidy half of
        :data:`TIDY`, wrong: the other) with probability ``(1 + style_signal) / 2``."""
        lhs, parts = nums[0], []
        for o, n, r in zip(ops, nums[1:], results):
            if not self.variety:
                parts.append(f"{lhs}{o}{n}={r};")
            elif self.style_signal == 0:
                pre = rng.choice(PREFIXES)
                a, b = (n, lhs) if o in "+*" and rng.random() < 0.5 else (lhs, n)
                s1, s2, s3, s4 = (" " if rng.random() < 0.5 else "" for _ in range(4))
                parts.append(f"{pre}{a}{s1}{o}{s2}{b}{s3}={s4}{r}{rng.choice(SEPARATORS)}")
            else:
                def tidy() -> bool:  # draw the tidy half? P = (1+s)/2 for a correct response, (1-s)/2 else
                    return (rng.random() < (1 + self.style_signal) / 2) == correct

                pre = rng.choice(TIDY["prefix"][0] if tidy() else TIDY["prefix"][1])
                a, b = (n, lhs) if o in "+*" and not tidy() else (lhs, n)
                s1, s2, s3, s4 = ("" if tidy() else " " for _ in range(4))
                sep = rng.choice(TIDY["separator"][0] if tidy() else TIDY["separator"][1])
                parts.append(f"{pre}{a}{s1}{o}{s2}{b}{s3}={s4}{r}{sep}")
            lhs = r
        return "".join(parts) + "\\boxed{" + str(results[-1]) + "}"

    @staticmethod
    def _results(nums, ops, slip_at: int = -1, slip: int = 0, misconceived: bool = False) -> list[int]:
        f = _apply_misconceived if misconceived else _apply
        acc, out = nums[0], []
        for i, (o, n) in enumerate(zip(ops, nums[1:])):
            acc = f(acc, o, n) + (slip if i == slip_at else 0)
            out.append(acc)
        return out

    def solution(self, problem: Problem, rng: random.Random) -> str:
        nums, ops = problem.meta["nums"], problem.meta["ops"]
        return self._write(nums, ops, self._results(nums, ops), rng)

    def wrong_solution(self, problem: Problem, rng: random.Random) -> str:
        nums, ops = problem.meta["nums"], problem.meta["ops"]
        slip = rng.choice(_SLIPS)
        results = self._results(nums, ops, rng.randrange(len(ops)), slip)
        if results[-1] == problem.answer:  # a later "*0" absorbed the slip: slip at the last step instead
            results = self._results(nums, ops, len(ops) - 1, slip)
        return self._write(nums, ops, results, rng, correct=False)

    def misconceived_solution(self, problem: Problem, rng: random.Random | None = None) -> str | None:
        """The misconceived response (module docstring), or None where it gives the right answer. Its
        results are a deterministic function of the problem; with ``variety`` its surface is drawn from
        ``rng`` (default: the task's own generator seeded with ``"stepwise/surface"``)."""
        if rng is not None and not isinstance(rng, random.Random):
            raise ValueError(f"rng must be a random.Random or None, got {rng!r}")
        nums, ops = problem.meta["nums"], problem.meta["ops"]
        results = self._results(nums, ops, misconceived=True)
        if results[-1] == problem.answer:
            return None
        return self._write(nums, ops, results, rng if rng is not None else self._surface_rng, correct=False)

    def verify(self, problem: Problem, response: str) -> float:
        try:
            return float(extract_boxed_int(response) == problem.answer)
        except Exception:
            return 0.0
