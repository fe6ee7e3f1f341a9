"""Reward functions for tests of the ``reward_fn`` knob of the prompt-file task (tests/ is on sys.path)."""

import math


def even_length(response, ground_truth, problem):
    """1 iff the response has an even number of characters (~50% for a random policy)."""
    return float(len(response) % 2 == 0)


def partial_credit(response: str, ground_truth: str, problem) -> float:
    """Fraction of the ground truth's characters found in the response (a non-0/1 reward)."""
    return sum(c in response for c in ground_truth) / len(ground_truth)


def with_default(response, ground_truth, problem=None, *, scale=1.0):
    """Extra optional parameters are fine: it still accepts (response, ground_truth, problem)."""
    return scale * float(response == ground_truth)


class Scorer:
    """A callable reached through a class attribute (``reward_fns:Scorer.score``)."""

    @staticmethod
    def score(response, ground_truth, problem):
        return 0.25


def two_args(response, ground_truth):
    """Wrong signature: no ``problem`` parameter."""
    return 1.0


def raises(response, ground_truth, problem):
    raise RuntimeError("boom")


def returns_nan(response, ground_truth, problem):
    return math.nan


def returns_text(response, ground_truth, problem):
    return "1"


NOT_CALLABLE = 3.0
