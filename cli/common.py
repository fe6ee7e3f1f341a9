"""Helpers shared by the ``entropy-mech`` subcommands: KEY=VALUE options, the help formatter, errors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def parse_kv_item(text: str) -> tuple[str, Any]:
    """``"a=1"`` -> ``("a", 1)``: the value is parsed as JSON, else kept as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a non-empty KEY, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def parse_kv(items: list[str] | None, what: str) -> dict:
    """``["a=1", "b=0.5", "c=+-"]`` -> ``{"a": 1, "b": 0.5, "c": "+-"}`` (JSON values, else strings)."""
    out = {}
    for item in items or []:
        try:
            k, v = parse_kv_item(item)
        except argparse.ArgumentTypeError as err:
            raise ValueError(f"{what}: {err}") from None
        out[k] = v
    return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description/epilog layout and appends ``(default: X)`` to options whose help does not
    mention their default already (used by every ``entropy-mech`` subcommand)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default is argparse.SUPPRESS or default is None or default is False
                or "default" in text or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def quiet_transformers() -> None:
    """Silence transformers' own progress bars and info logs (ours are the tqdm bars)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def fail(prog: str, err: Exception) -> int:
    """Print ``prog: error: msg`` to stderr and return exit status 2."""
    print(f"entropy-mech {prog}: error: {err}", file=sys.stderr)
    return 2
