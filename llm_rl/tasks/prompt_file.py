"""Prompt datasets in verl's layout (Parquet or JSONL), scored with a ``\\boxed{}`` answer verifier.

Each row needs ``prompt`` (a string, or a list of chat messages ``{"role", "content"}`` whose contents
are joined with newlines — no chat template is applied, a stated simplification), ``data_source``
(string, kept in ``Problem.meta``) and ``reward_model.ground_truth`` (the reference answer: a non-empty
string or a number, stored as a stripped string). Other columns (``extra_info``, ``ability``,
``reward_model.style``, ...) are ignored. The verifier is :func:`llm_rl.verifiers.boxed_match`
(``math-verify`` when installed). A missing, unreadable or empty file, or a malformed row, raises
``ValueError`` naming the file and the 0-based row (for JSONL, the 0-based line; blank lines are
skipped). Parquet needs ``pyarrow`` (the ``logs`` extra). The default character tokenizer encodes
characters outside its alphabet (newline, ``$``, ``'``, non-ASCII, ...) as ``<unk>``: real data wants a
real checkpoint's tokenizer (``--model``).

Use it as the task ``file`` with knobs ``train_path`` and ``val_path``::

    entropy-mech train --task file --knob train_path=data/train.parquet --knob val_path=data/test.parquet ...
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from ..verifiers import as_number, boxed_match
from .base import Problem, Task


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


def _problem(row, where: str, i: int) -> Problem:
    if not isinstance(row, dict):
        raise ValueError(f"{where} is not an object")
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in prompt):
            raise ValueError(f"{where}: 'prompt' messages need a string 'content'")
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


def load_prompt_file(path) -> list[Problem]:
    """Read a verl-style prompt file into problems (``answer`` = ground truth as a string).

    Raises:
      ValueError: naming the file (and the 0-based row) when it is missing, unreadable, empty or has a
        malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt file {path} does not exist")
    problems = [_problem(row, f"{path}: row {i}", i) for i, row in _rows(path)]
    if not problems:
        raise ValueError(f"{path} has no rows")
    return problems


@dataclass(frozen=True)
class PromptFileTask(Task):
    """Problems from verl-style prompt files (see module docstring)."""

    train_path: str = ""
    """training prompt file (.jsonl or .parquet)"""
    val_path: str = ""
    """validation prompt file (.jsonl or .parquet)"""
    max_new_tokens: int = 256
    """response length cap"""

    name = "file"

    def __post_init__(self):
        if not self.train_path or not self.val_path:
            raise ValueError("task 'file' needs the knobs train_path and val_path")
        if not isinstance(self.train_path, str) or not isinstance(self.val_path, str):
            raise ValueError("task 'file': train_path and val_path must be strings")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be a positive int")

    @property
    def max_response_chars(self) -> int:  # type: ignore[override]
        return self.max_new_tokens

    def fixed_splits(self) -> tuple[list[Problem], list[Problem]]:
        """The file contents: ``(train, val)``."""
        return load_prompt_file(self.train_path), load_prompt_file(self.val_path)

    def sample(self, rng: random.Random) -> Problem:
        train = load_prompt_file(self.train_path)
        return train[rng.randrange(len(train))]

    def solution(self, problem: Problem, rng: random.Random) -> str:
        return "\\boxed{" + problem.answer + "}"

    def wrong_solution(self, problem: Problem, rng: random.Random) -> str:
        # answer + 1: appending a digit would still verify for answers like "0" or "0.5" ("00", "0.50")
        num = as_number(problem.answer)
        wrong = str(num + 1) if num is not None and num.denominator == 1 else problem.answer + "+1"
        return "\\boxed{" + wrong + "}"

    def verify(self, problem: Problem, response: str) -> float:
        return boxed_match(response, problem.answer)
