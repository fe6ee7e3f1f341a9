"""What a synthetic verifiable task is, and its fixed seeded train / validation splits.

A task turns a ``random.Random`` into a :class:`Problem` (prompt text + ground truth), can write a
correct solution and a *plausible wrong* one for any problem (for the supervised warm start), and scores
a response with a verifier that returns 0.0 or 1.0 and never raises.

Splits (:func:`make_splits`): the validation set is drawn first from ``Random(f"{seed}/val")``; the
training set from ``Random(f"{seed}/train")`` skipping every prompt already in validation, so the two
never overlap and depend only on (task config, seed, sizes).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One prompt with its ground truth (``answer`` is whatever the task's verifier needs)."""

    prompt: str
    answer: Any
    meta: dict = field(default_factory=dict, compare=False, hash=False)


class Task:
    """Base class; subclasses are frozen dataclasses whose fields are the difficulty knobs."""

    name: str = "task"
    max_response_chars: int = 32
    warm_start_mix: tuple[float, float] = (0.6, 0.0)
    """default (wrong_frac, misconception_frac) of the supervised warm start (llm_rl.pretrain)"""

    def sample(self, rng: random.Random) -> Problem:  # pragma: no cover - abstract
        """Draw one problem."""
        raise NotImplementedError

    def solution(self, problem: Problem, rng: random.Random) -> str:  # pragma: no cover - abstract
        """A correct response (without end-of-sequence token)."""
        raise NotImplementedError

    def wrong_solution(self, problem: Problem, rng: random.Random) -> str:  # pragma: no cover - abstract
        """A well-formed but incorrect response resembling a typical mistake."""
        raise NotImplementedError

    def misconceived_solution(self, problem: Problem) -> str | None:
        """The response of a solver with one systematic, learnable misconception (e.g. forgetting carries),
        or None where it gives the right answer or the task defines none (the default)."""
        return None

    def verify(self, problem: Problem, response: str) -> float:  # pragma: no cover - abstract
        """1.0 if ``response`` solves ``problem``, else 0.0; never raises."""
        raise NotImplementedError

    def knobs(self) -> dict:
        """The task's difficulty knobs as a plain dict (for configs and cache keys)."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


def make_splits(task: Task, n_train: int, n_val: int, seed: int = 0,
                max_tries_factor: int = 50) -> tuple[list[Problem], list[Problem]]:
    """Fixed, disjoint train / validation problem lists (deterministic in task knobs and ``seed``).

    Args:
      task: the task; n_train, n_val: sizes (> 0); seed: split seed.
      max_tries_factor: give up (ValueError) after ``factor * size`` draws, i.e. when the task's
        problem space is too small for the requested sizes.
    Returns:
      ``(train, val)`` lists of :class:`Problem`, unique prompts within and across splits.
    """
    if not isinstance(task, Task):
        raise ValueError(f"task must be a Task, got {type(task).__name__}")
    for name, v in (("n_train", n_train), ("n_val", n_val)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")

    def draw(rng, n, exclude):
        out, seen = [], set(exclude)
        for _ in range(max_tries_factor * n):
            p = task.sample(rng)
            if p.prompt not in seen:
                seen.add(p.prompt)
                out.append(p)
                if len(out) == n:
                    return out
        raise ValueError(f"task {task.name} {task.knobs()} has too few distinct problems for {n} samples; "
                         "raise its difficulty or lower the split sizes")

    fixed = getattr(task, "fixed_splits", None)
    if fixed is not None:  # file-backed tasks: the files are the splits (first n rows of each)
        train, val = fixed()
        return train[:n_train], val[:n_val]
    val = draw(random.Random(f"{seed}/val"), n_val, ())
    train = draw(random.Random(f"{seed}/train"), n_train, {p.prompt for p in val})
    return train, val
