"""Verifiers: answer extraction and a safe arithmetic-expression evaluator (never ``eval``).

:func:`safe_eval` parses with ``ast.parse(mode="eval")`` and walks the tree itself, accepting only
integer literals, ``+ - * /`` and parentheses, evaluated exactly with ``fractions.Fraction``. Anything
else (names, calls, attribute access, huge literals, deep nesting, division by zero, syntax errors) gives
``None``. Every function here returns a value for *any* string and never raises.
"""

from __future__ import annotations

import ast
import re
from fractions import Fraction

_MAX_EXPR_CHARS = 200
_MAX_LITERAL = 10**6
_MAX_DEPTH = 32
_INT_RE = re.compile(r"-?\d{1,12}")
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}


def _walk(node, depth, literals):
    if depth > _MAX_DEPTH:
        return None
    if isinstance(node, ast.Expression):
        return _walk(node.body, depth + 1, literals)
    if isinstance(node, ast.Constant):
        v = node.value
        if type(v) is not int or v < 0 or v > _MAX_LITERAL:
            return None
        literals.append(v)
        return Fraction(v)
    if isinstance(node, ast.BinOp):
        a = _walk(node.left, depth + 1, literals)
        if a is None:
            return None
        b = _walk(node.right, depth + 1, literals)
        if b is None:
            return None
        if isinstance(node.op, ast.Div):
            return None if b == 0 else a / b
        op = _OPS.get(type(node.op))
        return None if op is None else op(a, b)
    return None


def safe_eval(expr: str) -> tuple[Fraction, list[int]] | None:
    """Evaluate an arithmetic expression of non-negative integer literals, ``+ - * /`` and parentheses.

    Args:
      expr: the expression text (whitespace allowed).
    Returns:
      ``(value, literals)`` with the exact rational value and the integer literals in order of
      appearance, or ``None`` if the text is not such an expression (or divides by zero). Never raises.
    """
    if not isinstance(expr, str) or not expr.strip() or len(expr) > _MAX_EXPR_CHARS:
        return None
    if any(c not in "0123456789+-*/() " for c in expr):
        return None  # cheap whitelist before the parser sees anything
    try:
        tree = ast.parse(expr.strip(), mode="eval")
        literals: list[int] = []
        value = _walk(tree, 0, literals)
    except Exception:  # SyntaxError, RecursionError, MemoryError-like failures: all just "malformed"
        return None
    return None if value is None else (value, literals)


def extract_final_int(response: str, marker: str = "#") -> int | None:
    """The integer after the last ``marker`` in ``response`` (surrounding spaces allowed), else ``None``."""
    if not isinstance(response, str) or marker not in response:
        return None
    tail = response.rsplit(marker, 1)[1].strip()
    return int(tail) if _INT_RE.fullmatch(tail) else None


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (balanced braces), else ``None``."""
    if not isinstance(text, str):
        return None
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth, out = start + len("\\boxed{"), 1, []
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return "".join(out).strip()
        out.append(c)
        i += 1
    return None


def _normalise_answer(s: str) -> str:
    s = s.strip().strip("$").replace(" ", "").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\!", "").replace("dfrac", "frac").replace("tfrac", "frac").rstrip(".")
    return s


def boxed_match(response: str, ground_truth: str) -> float:
    """1.0 if the last ``\\boxed{}`` in ``response`` equals ``ground_truth``, else 0.0 (never raises).

    Uses ``math_verify`` (optional extra) when installed; otherwise compares normalised strings and,
    when both parse as numbers, their numeric values.
    """
    try:
        pred = extract_boxed(response)
        if pred is None:
            return 0.0
        gt = str(ground_truth)
        try:
            import math_verify  # type: ignore

            return float(bool(math_verify.verify(math_verify.parse("\\boxed{" + gt + "}"),
                                                 math_verify.parse("\\boxed{" + pred + "}"))))
        except ImportError:
            pass
        a, b = _normalise_answer(pred), _normalise_answer(gt)
        if a == b:
            return 1.0
        try:
            return float(abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b))))
        except ValueError:
            return 0.0
    except Exception:
        return 0.0
