"""Lazy package exports (PEP 562): a package's curated names are imported from their submodules on first
access, so importing the package (e.g. for ``--help`` or a config) does not import torch."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, sources: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``(__getattr__, __dir__)`` for ``package``: ``name`` comes from submodule ``sources[name]`` on first
    access and is then cached in the package; other names raise ``AttributeError``."""

    def __getattr__(name: str):
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{source}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        module = sys.modules[package]
        return sorted(set(vars(module)) | set(getattr(module, "__all__", ())) | set(sources))

    return __getattr__, __dir__
