"""Verifiers: answer extraction and a safe arithmetic-expression evaluator (never ``eval``).

:func:`safe_eval` parses with ``ast.parse(mode="eval")`` and walks the tree itself, accepting only
integer literals, ``+ - * /`` and parentheses, evaluated exactly with ``fractions.Fraction``. Anything
else (names, calls, attribute access, huge literals, deep nesting, division by zero, syntax errors) gives
``None``. Every function here returns a value for *any* string and never raises.

:func:`boxed_match` compares the last ``\\boxed{}`` of a response with a reference answer, using
``math-verify`` when it is installed and usable (main thread only: its timeouts are ``signal.alarm``);
otherwise, and always first, normalised strings and exact numbers (:func:`as_number`).
"""

from __future__ import annotations

import ast
import logging
import re
import threading
import warnings
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


def extract_boxed_int(response: str) -> int | None:
    """The integer (optional ``-``, at most 12 digits, surrounding spaces allowed) in the last
    ``\\boxed{...}`` of ``response``, else ``None`` (no box, unbalanced braces, anything but an integer).
    Never raises."""
    content = extract_boxed(response)
    return int(content) if content is not None and _INT_RE.fullmatch(content) else None


def _normalise_answer(s: str) -> str:
    s = s.strip().strip("$").replace(" ", "").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\!", "").replace("dfrac", "frac").replace("tfrac", "frac").rstrip(".")
    return s


_NUM_RE = re.compile(r"(-?)(?:\\frac\{(\d{1,30})\}\{(\d{1,30})\}"  # sign, \frac{p}{q}
                     r"|(\d{1,30})/(\d{1,30})|(\d{0,30}\.?\d{1,30}))")  # p/q, integer or decimal


def as_number(s: str) -> Fraction | None:
    """Exact value of an integer, decimal, ``p/q`` or ``\\frac{p}{q}`` (optional ``-``), else ``None``."""
    m = _NUM_RE.fullmatch(s.strip()) if isinstance(s, str) else None
    if m is None:
        return None
    sign, fp, fq, p, q, dec = m.groups()
    if dec is not None:
        v = Fraction(dec)
    elif int(fq or q) == 0:
        return None
    else:
        v = Fraction(int(fp or p), int(fq or q))
    return -v if sign else v


#: math-verify's own timeout, in whole seconds, for each of its parse and compare calls
MATH_VERIFY_TIMEOUT_S = 2
_thread_warned = False
#: longest log message math-verify may write; its timeout warnings echo the whole (possibly 100 kB) input
LOG_MESSAGE_MAX_CHARS = 300


class _TruncateLongMessages(logging.Filter):
    """Shortens a log record's message to ``LOG_MESSAGE_MAX_CHARS`` characters (says how much was cut)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if len(msg) > LOG_MESSAGE_MAX_CHARS:
            record.msg = (f"{msg[:LOG_MESSAGE_MAX_CHARS]}... "
                          f"[{len(msg) - LOG_MESSAGE_MAX_CHARS} more characters]")
            record.args = None
        return True


_TRUNCATE = _TruncateLongMessages()


def _quiet_math_verify_logs() -> None:
    for name in ("math_verify.parser", "math_verify.grader", "math_verify.metric", "math_verify.utils"):
        logger = logging.getLogger(name)
        if _TRUNCATE not in logger.filters:
            logger.addFilter(_TRUNCATE)


def _math_verify(pred: str, gt: str) -> bool | None:
    """math-verify's verdict (gold first, as its docs require), or ``None`` when it cannot be used.

    math-verify bounds each parse/compare with ``signal.alarm`` (it resets any alarm the caller had
    set), which only works in the main thread; elsewhere it would raise, and its wrapper would turn every
    answer into "wrong". So outside the main thread we warn once and return ``None`` (the caller then
    uses the string / numeric comparison) rather than run sympy without a time limit.
    """
    global _thread_warned
    try:
        import math_verify  # type: ignore
        from math_verify.errors import TimeoutException  # type: ignore  # a BaseException
    except ImportError:
        return None
    _quiet_math_verify_logs()
    if threading.current_thread() is not threading.main_thread():
        if not _thread_warned:
            _thread_warned = True
            try:  # `-W error` must not turn this into an exception (boxed_match never raises)
                warnings.warn("boxed_match: math-verify needs the main thread (signal-based timeouts); "
                              "using string/numeric comparison in this thread", RuntimeWarning, stacklevel=3)
            except Warning:
                pass
        return None
    try:
        gold = math_verify.parse("\\boxed{" + gt + "}", parsing_timeout=MATH_VERIFY_TIMEOUT_S)
        target = math_verify.parse("\\boxed{" + pred + "}", parsing_timeout=MATH_VERIFY_TIMEOUT_S)
        return bool(math_verify.verify(gold, target, timeout_seconds=MATH_VERIFY_TIMEOUT_S))
    except (Exception, TimeoutException):  # an alarm landing outside math-verify's own handlers
        return None


def boxed_match(response: str, ground_truth: str) -> float:
    """1.0 if the last ``\\boxed{}`` in ``response`` equals ``ground_truth``, else 0.0 (never raises).

    Equal after light normalisation (spaces, ``$``, ``\\left``/``\\right``, ``dfrac``, a trailing
    period) counts as a match whatever is installed. Otherwise ``math_verify`` (optional extra) decides
    when installed and usable (main thread, see :func:`_math_verify`), else equal numeric values do.
    An empty ground truth or box never matches.
    """
    try:
        pred = extract_boxed(response)
        if pred is None:
            return 0.0
        gt = str(ground_truth)
        a, b = _normalise_answer(pred), _normalise_answer(gt)
        if not a or not b:
            return 0.0
        if a == b:
            return 1.0
        verdict = _math_verify(pred, gt)
        if verdict is not None:
            return float(verdict)
        x, y = as_number(a), as_number(b)
        return float(x is not None and x == y)
    except Exception:
        return 0.0
