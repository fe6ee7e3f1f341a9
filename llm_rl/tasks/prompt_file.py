"""Prompt datasets in verl's layout (Parquet or JSONL), scored with a ``\\boxed{}`` answer verifier or a
user's reward function.

Each row needs ``prompt``, ``data_source`` (string, kept in ``Problem.meta``) and
``reward_model.ground_truth`` (the reference answer: a non-empty string or a number, stored as a stripped
string). Other columns (``extra_info``, ``ability``, ``reward_model.style``, ...) are ignored. A missing,
unreadable or empty file, or a malformed row, raises ``ValueError`` naming the file and the 0-based row
(for JSONL, the 0-based line; blank lines are skipped). Parquet needs ``pyarrow`` (the ``logs`` extra).

Prompts, as TRL and verl build them: a ``prompt`` given as chat messages ``[{"role", "content"}, ...]``
becomes a :class:`~llm_rl.tasks.base.ChatPrompt` and goes through the tokenizer's chat template
(``apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``, no ``bos`` added) when the
tokenizer has one; a tokenizer without a template (the default character tokenizer) gets the contents
joined with newlines after ``bos``, and so does every tokenizer with the knob ``chat_template=false``. A
plain string ``prompt`` is used as it is. The default character tokenizer encodes characters outside its
alphabet (newline, ``$``, ``'``, non-ASCII, ...) as ``<unk>``: real data wants a real checkpoint's
tokenizer (``--model``).

Rewards: by default :func:`llm_rl.verifiers.boxed_match` (``math-verify`` when installed), 0 or 1. The
knob ``reward_fn`` names a Python callable ``(response: str, ground_truth: str, problem: Problem) -> float``
by a dotted path, ``package.module:function`` or ``package.module.function`` (the module must be
importable, like TRL's ``reward_funcs`` and verl's ``custom_reward_function``); it is imported and its
signature checked when the task is built, before any model is loaded (``ValueError`` naming the path).
Its return value must be a finite number; an exception it raises stops the run (re-raised as
``ValueError`` naming the function and the row). With a non-0/1 reward the validation "accuracies" are
mean rewards.

Use it as the task ``file`` with knobs ``train_path`` and ``val_path``::

    entropy-mech train --task file --knob train_path=data/train.parquet --knob val_path=data/test.parquet ...
    entropy-mech train --task file ... --knob reward_fn=mypkg.rewards:score --knob chat_template=false
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from ..verifiers import as_number, boxed_match
from .base import ChatPrompt, Problem, Task


def _rows(path: Path):
    """``(row index, parsed row)`` pairs; for JSONL the index is the 0-based line (blank lines skipped)."""
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            for i, raw in enumerate(f):
                try:
                    line = raw.decode("utf-8-sig")  # tolerate a byte-order mark
                    if line.strip():
                        yield i, json.loads(line)
                except (UnicodeDecodeError, json.JSONDecodeError) as err:
                    raise ValueError(f"{path}: row {i} is not valid UTF-8 JSON ({err})") from None
    elif path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"reading {path} needs pyarrow (pip install pyarrow)") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as err:  # ArrowInvalid (not Parquet / corrupt), OSError, ...
            raise ValueError(f"{path}: cannot read as Parquet ({type(err).__name__}: {err})") from None
        yield from enumerate(rows)
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl or .parquet")


def _problem(row, where: str, i: int, chat: bool = True) -> Problem:
    if not isinstance(row, dict):
        raise ValueError(f"{where} is not an object")
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in prompt):
            raise ValueError(f"{where}: 'prompt' messages need a string 'content'")
        if chat and prompt:
            try:
                prompt = ChatPrompt(prompt)
            except ValueError as err:
                raise ValueError(f"{where}: 'prompt' {err}") from None
        else:
            prompt = "\n".join(m["content"] for m in prompt)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: 'prompt' must be a non-empty string or list of chat messages")
    rm = row.get("reward_model")
    gt = rm.get("ground_truth") if isinstance(rm, dict) else None
    if gt is None:
        raise ValueError(f"{where}: missing 'reward_model.ground_truth'")
    if (isinstance(gt, bool) or not isinstance(gt, (str, int, float)) or not str(gt).strip()
            or (isinstance(gt, float) and not math.isfinite(gt))):
        raise ValueError(f"{where}: 'reward_model.ground_truth' must be a non-empty string or a number, "
                         f"got {gt!r}")
    source = row.get("data_source")
    if not isinstance(source, str):
        raise ValueError(f"{where}: 'data_source' must be a string")
    return Problem(prompt, str(gt).strip(), {"data_source": source, "row": i})


def load_prompt_file(path, *, chat_template: bool = True) -> list[Problem]:
    """Read a verl-style prompt file into problems (``answer`` = ground truth as a string).

    Args:
      path: the .jsonl or .parquet file.
      chat_template: chat-message prompts become :class:`~llm_rl.tasks.base.ChatPrompt` (rendered by the
        tokenizer's chat template when it has one); False: plain newline-joined strings.
    Raises:
      ValueError: naming the file (and the 0-based row) when it is missing, unreadable, empty or has a
        malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt file {path} does not exist")
    problems = [_problem(row, f"{path}: row {i}", i, chat_template) for i, row in _rows(path)]
    if not problems:
        raise ValueError(f"{path} has no rows")
    return problems


def _import_error(path: str, what: str) -> ValueError:
    return ValueError(f"reward_fn {path!r}: {what}; expected 'package.module:function' or "
                      "'package.module.function' naming a callable "
                      "(response, ground_truth, problem) -> float")


@functools.lru_cache(maxsize=None)
def load_reward_fn(path: str):
    """The callable named by ``path`` (``package.module:function`` or ``package.module.function``).

    Checks that the module imports, the attribute exists and is callable, and that it accepts the three
    positional arguments ``(response, ground_truth, problem)``.

    Raises:
      ValueError: naming ``path``, for any of these failures.
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"reward_fn must be a non-empty dotted path, got {path!r}")
    path = path.strip()
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise _import_error(path, "not a dotted path to a function")
    try:
        obj = importlib.import_module(module)
    except Exception as err:  # ImportError, SyntaxError, or whatever the module raises on import
        raise _import_error(path, f"cannot import module {module!r} ({type(err).__name__}: {err}; is its "
                                  "folder on PYTHONPATH?)") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise _import_error(path, f"{module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise _import_error(path, f"{attr!r} is a {type(obj).__name__}, not callable")
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have no inspectable signature: trust them
        return obj
    try:
        sig.bind("", "", None)
    except TypeError:
        raise _import_error(path, f"its signature {sig} does not take "
                                  "(response, ground_truth, problem)") from None
    return obj


@dataclass(frozen=True)
class PromptFileTask(Task):
    """Problems from verl-style prompt files (see module docstring)."""

    train_path: str = ""
    """training prompt file (.jsonl or .parquet)"""
    val_path: str = ""
    """validation prompt file (.jsonl or .parquet)"""
    max_new_tokens: int = 256
    """response length cap"""
    chat_template: bool = True
    """render chat-message prompts with the tokenizer's chat template when it has one (false: join the
    message contents with newlines)"""
    reward_fn: str = ""
    """dotted path 'package.module:function' of a reward (response, ground_truth, problem) -> float;
    empty = the \\boxed{} answer verifier"""

    name = "file"

    def __post_init__(self):
        if not self.train_path or not self.val_path:
            raise ValueError("task 'file' needs the knobs train_path and val_path")
        if not isinstance(self.train_path, str) or not isinstance(self.val_path, str):
            raise ValueError("task 'file': train_path and val_path must be strings")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be a positive int")
        if not isinstance(self.chat_template, bool):
            raise ValueError(f"task 'file': chat_template must be true or false, got {self.chat_template!r}")
        if not isinstance(self.reward_fn, str):
            raise ValueError(f"task 'file': reward_fn must be a dotted path string, got {self.reward_fn!r}")
        if self.reward_fn:
            load_reward_fn(self.reward_fn)  # fail now, before any model is loaded

    @property
    def max_response_chars(self) -> int:  # type: ignore[override]
        return self.max_new_tokens

    def fixed_splits(self) -> tuple[list[Problem], list[Problem]]:
        """The file contents: ``(train, val)``."""
        return (load_prompt_file(self.train_path, chat_template=self.chat_template),
                load_prompt_file(self.val_path, chat_template=self.chat_template))

    def sample(self, rng: random.Random) -> Problem:
        train = load_prompt_file(self.train_path, chat_template=self.chat_template)
        return train[rng.randrange(len(train))]

    def solution(self, problem: Problem, rng: random.Random) -> str:
        return "\\boxed{" + problem.answer + "}"

    def wrong_solution(self, problem: Problem, rng: random.Random) -> str:
        # answer + 1: appending a digit would still verify for answers like "0" or "0.5" ("00", "0.50")
        num = as_number(problem.answer)
        wrong = str(num + 1) if num is not None and num.denominator == 1 else problem.answer + "+1"
        return "\\boxed{" + wrong + "}"

    def verify(self, problem: Problem, response: str) -> float:
        """``reward_fn(response, problem.answer, problem)`` when set, else the ``\\boxed{}`` match (0 or 1).

        Raises:
          ValueError: the reward function raised, or returned something other than a finite number.
        """
        if not self.reward_fn:
            return boxed_match(response, problem.answer)
        fn = load_reward_fn(self.reward_fn)
        where = f"reward function {self.reward_fn!r} on row {problem.meta.get('row')}"
        try:
            r = fn(response, problem.answer, problem)
        except Exception as err:
            raise ValueError(f"{where} raised {type(err).__name__}: {err}") from err
        try:
            value = float(r)
        except (TypeError, ValueError):
            raise ValueError(f"{where} returned {r!r}; it must return a number") from None
        if isinstance(r, str) or not math.isfinite(value):
            raise ValueError(f"{where} returned {r!r}; it must return a finite number")
        return value
