"""Synthetic verifiable tasks by name: ``make_task("arithmetic", n_terms=3)``."""

from __future__ import annotations

import dataclasses

from .arithmetic import ArithmeticTask
from .base import Problem, Task, make_splits
from .countdown import CountdownTask
from .prompt_file import PromptFileTask, load_prompt_file
from .stepwise import StepwiseTask

TASKS: dict[str, type[Task]] = {"arithmetic": ArithmeticTask, "countdown": CountdownTask,
                                "file": PromptFileTask, "stepwise": StepwiseTask}


def make_task(name: str, **knobs) -> Task:
    """Instantiate a task by name; unknown names or knobs raise ``ValueError`` listing the valid ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    bad = sorted(set(knobs) - set(valid))
    if bad:
        raise ValueError(f"unknown knob(s) {bad} for task {name!r}; valid knobs: {', '.join(valid)}")
    return cls(**knobs)


__all__ = ["TASKS", "ArithmeticTask", "CountdownTask", "PromptFileTask", "StepwiseTask", "load_prompt_file",
           "Problem", "Task", "make_splits", "make_task"]
