"""Config files for ``--config FILE``: reading YAML / JSON into a mapping, merging it under the
command-line options, and coercing file values to the types of the config's fields.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["coerce", "merge", "read_config_file"]


def coerce(value: Any, o) -> Any:
    """File values to the field's type where YAML/JSON cannot say it (``1e-4`` is a string in YAML 1.1,
    JSON has no tuples). ``o``: the field's :class:`cli.config_args.Option`."""
    if value is None:
        return value
    if o.kind == "tuple" and isinstance(value, list):
        return tuple(value)
    number = r"\s*[-+]?[\d.]+(e[-+]?\d+)?\s*"
    if o.hint is float and isinstance(value, str) and re.fullmatch(number, value, re.I):
        return float(value)
    if o.hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def merge(base: dict, override: dict) -> dict:
    """Recursive merge: ``override`` wins; nested dicts (sections and dict fields) merge key by key."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path: str | Path) -> dict:
    """A mapping from a ``.yaml``/``.yml`` or ``.json`` file (other suffixes: JSON, then YAML)."""
    p = Path(path)
    text = p.read_text()
    suffix = p.suffix.lower()

    def _yaml(t: str):
        try:
            import yaml
        except ImportError as err:  # pragma: no cover - pyyaml is a core dependency
            raise ValueError(f"{p}: reading YAML needs pyyaml (pip install pyyaml)") from err
        try:
            return yaml.safe_load(t)
        except yaml.YAMLError as err:
            raise ValueError(f"{p}: not valid YAML: {err}") from err

    if suffix in (".yaml", ".yml"):
        data = _yaml(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            if suffix == ".json":
                raise ValueError(f"{p}: not valid JSON: {err}") from err
            data = _yaml(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a config file must hold a mapping of settings, got {type(data).__name__}")
    return data
