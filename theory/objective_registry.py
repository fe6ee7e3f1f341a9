"""Registry of the token-level objectives: their names, their common signature, lookup by name.

:class:`ObjectiveName` lists the built-in objectives of :mod:`theory.objectives` (paper §4.2), which
register themselves here with :func:`register_objective` when that module is imported; other
objectives with the same signature (:class:`ObjectiveFn`, documented in :mod:`theory.objectives`) can
be added the same way. Import these names from :mod:`theory.objectives`, which re-exports them.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from .cov_selection import CovStats


class ObjectiveName(str, Enum):
    """Built-in objectives (string values are the registry names)."""

    VANILLA_PG = "vanilla_pg"
    PPO_CLIP = "ppo_clip"
    CLIP_HIGHER = "clip_higher"
    CLIP_COV = "clip_cov"
    KL_COV = "kl_cov"


KNOWN_OBJECTIVES: tuple[str, ...] = tuple(n.value for n in ObjectiveName)


class ObjectiveFn(Protocol):
    def __call__(
        self,
        log_prob: torch.Tensor,
        old_log_prob: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        stats: "CovStats | None" = None,
        **hyperparameters,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


OBJECTIVES: dict[str, ObjectiveFn] = {}


def register_objective(name: str, fn: ObjectiveFn | None = None, *, overwrite: bool = False):
    """Register ``fn`` under ``name`` (usable as ``@register_objective("name")``).

    Raises:
      ValueError: ``name`` is already registered and ``overwrite`` is False.
    """
    key = name.value if isinstance(name, Enum) else str(name)

    def deco(f: ObjectiveFn) -> ObjectiveFn:
        if key in OBJECTIVES and not overwrite:
            raise ValueError(f"objective {key!r} is already registered (pass overwrite=True to replace it)")
        OBJECTIVES[key] = f
        return f

    return deco if fn is None else deco(fn)


def get_objective(name: str | ObjectiveName) -> ObjectiveFn:
    """The registered objective called ``name``.

    Raises:
      ValueError: unknown name; the message lists the registered names.
    """
    key = name.value if isinstance(name, Enum) else name
    try:
        return OBJECTIVES[key]
    except (KeyError, TypeError):
        known = ", ".join(sorted(OBJECTIVES))
        raise ValueError(f"unknown objective {name!r}; known objectives: {known}") from None


__all__ = [
    "KNOWN_OBJECTIVES",
    "OBJECTIVES",
    "ObjectiveFn",
    "ObjectiveName",
    "get_objective",
    "register_objective",
]
