"""What a synthetic verifiable task is, and its fixed seeded train / validation splits.

A task turns a ``random.Random`` into a :class:`Problem` (prompt text + ground truth), can write a
correct solution and a *plausible wrong* one for any problem (for the supervised warm start), and scores
a response with a verifier that returns 0.0 or 1.0 and never raises.

Splits (:func:`make_splits`): the validation set is drawn first from ``Random(f"{seed}/val")``; the
training set from ``Random(f"{seed}/train")`` skipping every prompt already in validation, so the two
never overlap and depend only on (task config, seed, sizes).

Chat prompts (:class:`ChatPrompt`): a prompt given as chat messages is a ``str`` (its contents joined with
newlines, the text used for de-duplication, warnings and tokenizers without a chat template) that also
keeps the messages; :func:`chat_template_text` renders it with the tokenizer's chat template at encoding
time (:func:`llm_rl.rollout.encode_prompts`), as TRL and verl build prompts.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any


class ChatPrompt(str):
    """A prompt given as chat messages ``[{"role", "content"}, ...]``.

    As a ``str`` it is ``"\\n".join(m["content"] for m in messages)`` (so it compares, hashes and prints
    like the plain newline-joined prompt); :attr:`messages` keeps the messages for the chat template.

    Raises:
      ValueError: ``messages`` is not a non-empty list of dicts with a string ``content`` (and, where
        given, a string ``role``).
    """

    def __new__(cls, messages):
        if (not isinstance(messages, (list, tuple)) or not messages
                or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)):
            raise ValueError("chat messages must be a non-empty list of dicts with a string 'content'")
        if not all(isinstance(m.get("role", ""), str) for m in messages):
            raise ValueError("chat messages need a string 'role'")
        msgs = tuple(dict(m) for m in messages)
        obj = super().__new__(cls, "\n".join(m["content"] for m in msgs))
        obj._messages = msgs
        return obj

    @property
    def messages(self) -> list[dict]:
        """A copy of the messages (list of dicts)."""
        return [dict(m) for m in self._messages]

    def __reduce__(self):
        return ChatPrompt, (self.messages,)


def chat_template_text(tokenizer, prompt: str) -> str | None:
    """The prompt rendered by the tokenizer's chat template, or None when there is nothing to render.

    ``tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)`` when
    ``prompt`` is a :class:`ChatPrompt` and ``tokenizer.chat_template`` is set; None for a plain string or
    a tokenizer without a chat template (the caller then uses the newline-joined text).

    Raises:
      ValueError: the template fails on these messages (e.g. a role it does not accept), naming the prompt.
    """
    if not isinstance(prompt, ChatPrompt) or not getattr(tokenizer, "chat_template", None):
        return None
    try:
        text = tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # jinja2 TemplateError, KeyError, ...: name the prompt
        raise ValueError(f"the tokenizer's chat template failed on prompt {str(prompt)[:60]!r} "
                         f"({type(err).__name__}: {err})") from err
    if not isinstance(text, str):
        raise ValueError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


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
