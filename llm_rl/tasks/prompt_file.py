"""Prompt datasets in verl's layout (Parquet or JSONL), scored with a ``\\boxed{}`` answer verifier.

Each row needs ``prompt`` (a string, or a list of chat messages ``{"role", "content"}`` whose contents
are joined with newlines — no chat template is applied, a stated simplification), ``data_source``
(string, kept in ``Problem.meta``) and ``reward_model.ground_truth`` (the reference answer). The verifier
is :func:`llm_rl.verifiers.boxed_match` (``math-verify`` when installed). A malformed row raises
``ValueError`` naming the file and the 0-based row. Parquet needs ``pyarrow`` (the ``logs`` extra).

Use it as the task ``file`` with knobs ``train_path`` and ``val_path``::

    entropy-mech train --task file --knob train_path=data/train.parquet --knob val_path=data/test.parquet ...
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..verifiers import boxed_match
from .base import Problem, Task


def _rows(path: Path):
    if path.suffix == ".jsonl":
        with open(path) as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: row {i} is not valid JSON ({err})") from None
    elif path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"reading {path} needs pyarrow (pip install pyarrow)") from None
        yield from enumerate(pq.read_table(path).to_pylist())
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl or .parquet")


def load_prompt_file(path) -> list[Problem]:
    """Read a verl-style prompt file into problems (``answer`` = ground truth as a string)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt file {path} does not exist")
    problems = []
    for i, row in _rows(path):
        where = f"{path}: row {i}"
        if not isinstance(row, dict):
            raise ValueError(f"{where} is not an object")
        prompt = row.get("prompt")
        if isinstance(prompt, list):
            if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in prompt):
                raise ValueError(f"{where}: 'prompt' messages need a string 'content'")
            prompt = "\n".join(m["content"] for m in prompt)
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"{where}: 'prompt' must be a non-empty string or list of chat messages")
        rm = row.get("reward_model")
        if not isinstance(rm, dict) or "ground_truth" not in rm or rm["ground_truth"] is None:
            raise ValueError(f"{where}: missing 'reward_model.ground_truth'")
        source = row.get("data_source")
        if not isinstance(source, str):
            raise ValueError(f"{where}: 'data_source' must be a string")
        problems.append(Problem(prompt, str(rm["ground_truth"]), {"data_source": source, "row": i}))
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
        return "\\boxed{" + problem.answer + "0}"

    def verify(self, problem: Problem, response: str) -> float:
        return boxed_match(response, problem.answer)
