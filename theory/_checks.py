"""Input validation shared by every public function of ``theory`` (and reused downstream).

Each check raises ``ValueError`` with a message that names the offending argument, so a shape or
dtype mistake surfaces at the call site rather than as a NaN three modules later.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


#: set by tests to run the objectives' accelerator code paths on CPU tensors (tests/test_theory_surrogate.py)
_DEVICE_PATHS_ON_CPU = False


def host_readable(t: torch.Tensor) -> bool:
    """Whether the objectives may take their CPU shortcuts for ``t``: a CPU tensor, whose values were checked
    for NaN/inf on entry and can be read without waiting for a device (docs/theory.md §1.10). Elsewhere
    they use the forms that need neither (``where`` masking, a sort for the top-k)."""
    return t.device.type == "cpu" and not _DEVICE_PATHS_ON_CPU


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half precision is upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _value_checks_pass(x: torch.Tensor, allow_neg_inf: bool) -> bool:
    """No NaN and no +inf (and no -inf unless allowed). Fast path: one vectorised sum (a NaN or an inf
    makes it non-finite, so a finite sum proves the tensor finite); otherwise (an overflowing sum, -inf)
    one fused comparison pass decides (NaN fails every comparison)."""
    if math.isfinite(float(x.detach().sum())):
        return True
    inf = float("inf")
    ok = (x < inf) if allow_neg_inf else (x.abs() < inf)
    return bool(ok.all())


def check_float_tensor(x, name: str, *, min_dim: int = 0, allow_neg_inf: bool = False) -> torch.Tensor:
    """Return ``x`` if it is a floating tensor of rank >= ``min_dim`` with no NaN (and no inf,
    except ``-inf`` when ``allow_neg_inf``); raise ``ValueError`` otherwise."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be a floating tensor (float16/bfloat16/float32/float64), "
                         f"got {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape {tuple(x.shape)}")
    if x.numel() and not _value_checks_pass(x, allow_neg_inf):
        if torch.isnan(x).any():
            raise ValueError(f"{name} contains NaN")
        if allow_neg_inf:
            raise ValueError(f"{name} contains +inf (only -inf is allowed, meaning a masked action)")
        raise ValueError(f"{name} contains inf")
    return x


def check_logits(logits, name: str = "logits") -> torch.Tensor:
    """Validate a logits tensor ``[..., n]``: floating, rank >= 1, no NaN/+inf, -inf allowed as a
    masked action, and at least one unmasked action per row."""
    check_float_tensor(logits, name, min_dim=1, allow_neg_inf=True)
    if logits.shape[-1] < 1:
        raise ValueError(f"{name} has an empty action axis (shape {tuple(logits.shape)})")
    if logits.numel() and bool((logits.amax(dim=-1) == float("-inf")).any()):
        raise ValueError(f"{name} has a row in which every action is masked (-inf); entropy is undefined")
    return logits


def check_broadcastable(x: torch.Tensor, target_shape: torch.Size, name: str, target: str) -> None:
    """Raise unless ``x`` broadcasts to ``target_shape`` without changing it."""
    try:
        shape = torch.broadcast_shapes(x.shape, target_shape)
    except RuntimeError:
        shape = None
    if shape != target_shape:
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not broadcast to {target} shape {tuple(target_shape)}"
        )


def check_same_shape(x: torch.Tensor, y: torch.Tensor, name_x: str, name_y: str) -> None:
    """Raise unless ``x`` and ``y`` have identical shapes."""
    if x.shape != y.shape:
        raise ValueError(f"{name_x} has shape {tuple(x.shape)} but {name_y} has shape {tuple(y.shape)}")


def check_mask(mask, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Validate a token mask (bool or 0/1 numeric) of the same shape as ``like``; return it as bool."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    check_same_shape(mask, like, name, "the tensor it masks")
    if mask.dtype == torch.bool:
        return mask
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{name} must be boolean or contain only 0 and 1")
    return mask.bool()


def check_scalar(value, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """Validate a finite Python/NumPy/0-dim-tensor scalar and return it as float."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonnegative and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


@dataclass(frozen=True)
class Hyperparameter:
    """Default and valid values of a scalar hyperparameter (the objectives' registry uses it):
    ``kind`` "real" (in [low, high]; finite unless
    ``finite`` is False; ``fraction``: a token fraction under the percent guard), "bool", or "any"
    (unchecked: a custom objective's own keyword)."""

    default: Any = inspect.Parameter.empty
    kind: str = "any"
    low: float = -math.inf
    high: float = math.inf
    finite: bool = True
    fraction: bool = False

    def check(self, name: str, value):
        if self.kind == "any":
            return value
        if self.kind == "bool":
            if value in (True, False):
                return bool(value)
            raise ValueError(f"{name}={value!r} must be True or False")
        if self.finite:
            v = check_scalar(value, name)
        else:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a real number, got {value!r}") from None
        if v != v:
            raise ValueError(f"{name} must not be NaN")
        if not self.low <= v <= self.high:
            hint = " (a fraction of tokens, not a percent)" if self.fraction else ""
            lo = "(-inf" if self.low == -math.inf else f"[{self.low:g}"
            hi = "inf)" if self.high == math.inf else f"{self.high:g}]"
            raise ValueError(f"{name}={v:g} is outside its valid range {lo}, {hi}{hint}")
        return v
