"""Helpers shared by the ``entropy-mech pretrain/train/eval`` subcommands."""

from __future__ import annotations

import json
import sys


def parse_kv(items: list[str] | None, what: str) -> dict:
    """``["a=1", "b=0.5", "c=+-"]`` -> ``{"a": 1, "b": 0.5, "c": "+-"}`` (JSON values, else strings)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} must look like key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def quiet_transformers() -> None:
    """Silence transformers' own progress bars and info logs (ours are the tqdm bars)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def fail(prog: str, err: Exception) -> int:
    """Print ``prog: error: msg`` to stderr and return exit status 2."""
    print(f"entropy-mech {prog}: error: {err}", file=sys.stderr)
    return 2
