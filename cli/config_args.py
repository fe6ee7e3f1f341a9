"""Command-line options generated from a config dataclass, ``--config FILE``, and back to the dataclass.

One :class:`ConfigArgs` per config class (``SimConfig``, ``TrainConfig``, ``PretrainConfig``) registers one
option per field, nested dataclass fields included, so every setting is reachable from the command line:

- the flag is the field name with dashes (``n_train`` -> ``--n-train``), unless the subcommand's table maps
  it to a shared-vocabulary name (``objective_kwargs`` -> ``--objective-param``); a leaf name that occurs in
  two sections is prefixed with its section (``<section>-<name>``);
- the help is the field's in-place docstring followed by ``(default: X)``;
- ``bool`` fields are ``--x/--no-x``; ``dict`` fields are repeatable ``--x KEY=VALUE`` (VALUE is parsed as
  JSON, else kept as a string); ``tuple`` fields take as many values as their default has; ``X | None``
  fields also accept ``none``; choices come from the config module's name constants;
- old spellings are registered as hidden aliases of the same option and listed in the help epilog.

Every option defaults to ``argparse.SUPPRESS``, so the parsed namespace holds exactly what was typed.
:meth:`ConfigArgs.resolve` merges, lowest precedence first: the dataclass defaults, the ``--config`` file
(YAML or JSON, nested exactly like ``dataclasses.asdict``; a run's ``config.json``, which wraps the config
with an environment record, loads as is) and the options given on the command line. ``dict`` fields merge
key by key (a ``--knob`` adds to / overrides the file's knobs). Unknown keys in a file are an error naming
the key and the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .common import HelpFormatter, parse_kv_item
from .config_file import coerce, merge, read_config_file

DEST_PREFIX = "cfg:"  # argparse dest of a config option: DEST_PREFIX + dotted field path
CONFIG_HELP = ("read settings from a YAML or JSON file nested like the config (a run's config.json loads as "
               "is); options given on the command line override it")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass: the string literal written right under each field."""
    import ast

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:] + [None]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _optional(kind: Callable) -> Callable:
    def convert(text: str):
        return None if text.strip().lower() in ("none", "null") else kind(text)

    convert.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in its error messages
    return convert


def _mapped(kind: Callable, mapping: dict[str, Any]) -> Callable:
    def convert(text: str):
        return mapping[text] if text in mapping else kind(text)

    convert.__name__ = getattr(kind, "__name__", "value")
    return convert


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return " ".join(_show(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={json.dumps(v)}" for k, v in value.items()) if value else "none"
    if value == "":
        return "''"
    return str(value)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(hint, types.UnionType)):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


@dataclass
class Option:
    """One config field as a command-line option."""

    path: tuple[str, ...]
    """field path from the root config, e.g. ``("optim", "lr")``"""
    flag: str
    """canonical option string, e.g. ``--lr``"""
    kind: str
    """``bool``, ``dict``, ``tuple``, ``section`` or ``value``"""
    hint: Any
    """the field's type (``X`` of ``X | None`` for optional fields)"""
    optional: bool
    """``X | None``"""
    default: Any
    """the dataclass default"""
    doc: str
    """the field's docstring"""
    aliases: tuple[str, ...] = ()
    """old spellings (hidden in the option list, named in the epilog)"""

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def dest(self) -> str:
        return DEST_PREFIX + self.dotted


class ConfigArgs:
    """Options for every field of the dataclass ``cls`` (recursing into nested dataclass fields).

    Args:
      cls: the config dataclass.
      flags: dotted field path -> canonical flag (the shared vocabulary), overriding the generated one.
      aliases: dotted field path -> old spellings accepted as hidden aliases.
      choices: dotted field path -> allowed values (argparse checks them; the dataclass checks file values).
      value_aliases: option string -> ``{old value: value}`` translated before the choices check.
      extra_help: dotted field path -> text appended to the docstring (e.g. the valid names).
      legacy_keys: dotted key of an old config file -> ``(dotted field path, {old value: value})``.
      ignore_keys: top-level keys of a config file that are facts about a run, not settings (skipped).
      required: dotted field paths that must be set, on the command line or in the ``--config`` file
        (their dataclass default is not used).
    """

    def __init__(self, cls: type, *, flags: dict[str, str] | None = None,
                 aliases: dict[str, tuple[str, ...]] | None = None,
                 choices: dict[str, tuple | None] | None = None,
                 value_aliases: dict[str, dict[str, Any]] | None = None,
                 extra_help: dict[str, str] | None = None,
                 legacy_keys: dict[str, tuple[str, dict[str, Any]]] | None = None,
                 ignore_keys: tuple[str, ...] = (), required: tuple[str, ...] = ()):
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        self.cls = cls
        self.flags = dict(flags or {})
        self.alias_table = {k: tuple(v) for k, v in (aliases or {}).items()}
        self.choices = {k: v for k, v in (choices or {}).items() if v}
        self.value_aliases = dict(value_aliases or {})
        self.extra_help = dict(extra_help or {})
        self.legacy_keys = dict(legacy_keys or {})
        self.ignore_keys = tuple(ignore_keys)
        self.required = tuple(required)
        self.sections: dict[tuple[str, ...], type] = {(): cls}
        self.options: list[Option] = []
        self._collect(cls, ())
        names = [o.path[-1] for o in self.options]
        for o in self.options:
            if o.dotted in self.flags:
                o.flag = self.flags[o.dotted]
            elif names.count(o.path[-1]) > 1 and len(o.path) > 1:
                o.flag = "--" + "-".join(o.path[-2:]).replace("_", "-")
            o.aliases = self.alias_table.get(o.dotted, ())
        keys = [*self.flags, *self.alias_table, *self.choices, *self.extra_help, *self.required]
        for key in keys:
            if key not in self.by_path:
                raise ValueError(f"{cls.__name__} has no field {key!r}")
        seen: dict[str, str] = {}
        for o in self.options:
            for s in (o.flag, *o.aliases):
                if s in seen:
                    raise ValueError(f"option {s} would set both {seen[s]} and {o.dotted}")
                seen[s] = o.dotted

    # ------------------------------------------------------------------------------------------------
    def _collect(self, cls: type, prefix: tuple[str, ...]) -> None:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            path = (*prefix, f.name)
            hint, optional = _unwrap_optional(hints.get(f.name, str))
            if dataclasses.is_dataclass(hint):
                self.sections[path] = hint
                self._collect(hint, path)
                continue
            default = _field_default(f)
            origin = typing.get_origin(hint) or hint
            if origin is bool:
                kind = "bool"
            elif origin is dict:
                kind = "dict"
            elif origin is tuple or isinstance(default, tuple):
                kind = "tuple"
            else:
                kind = "value"
            self.options.append(Option(path, "--" + f.name.replace("_", "-"), kind, hint, optional, default,
                                       docs.get(f.name, "")))

    @property
    def by_path(self) -> dict[str, Option]:
        return {o.dotted: o for o in self.options}

    def option(self, dotted: str) -> Option:
        """The option of the field ``dotted`` (e.g. ``"optim.lr"``)."""
        return self.by_path[dotted]

    def alias_pairs(self) -> list[tuple[str, str]]:
        """``[(old spelling, canonical flag)]`` (with the translated values where an old spelling takes old
        values, e.g. ``("--adv-norm std|mean", "--advantage grpo|drgrpo")``)."""
        pairs = []
        for o in self.options:
            for a in o.aliases:
                mapping = self.value_aliases.get(a)
                if mapping:
                    pairs.append((f"{a} {'|'.join(map(str, mapping))}",
                                  f"{o.flag} {'|'.join(map(str, mapping.values()))}"))
                else:
                    pairs.append((a, o.flag))
        return pairs

    # ------------------------------------------------------------------------------------------------
    def add_to(self, parser: argparse.ArgumentParser, *, config_option: bool = True,
               section_titles: dict[str, str] | None = None) -> None:
        """Register ``--config`` and one option per field (hidden aliases included) on ``parser``."""
        if config_option:
            parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
        groups: dict[tuple[str, ...], Any] = {(): parser}
        for path, sec in self.sections.items():
            if path:
                doc = " ".join((sec.__doc__ or "").split())
                title = (section_titles or {}).get(".".join(path), f"{'.'.join(path)} ({sec.__name__})")
                groups[path] = parser.add_argument_group(title, doc or None)
        for o in self.options:
            target = groups[o.path[:-1]]
            kw = self._argparse_kwargs(o)
            target.add_argument(o.flag, **kw, help=self._help(o))
            for alias in o.aliases:
                kw_alias = self._argparse_kwargs(o, alias)
                target.add_argument(alias, **kw_alias, help=argparse.SUPPRESS)

    def _argparse_kwargs(self, o: Option, flag: str | None = None) -> dict:
        flag = flag or o.flag
        kw: dict[str, Any] = {"dest": o.dest, "default": argparse.SUPPRESS}
        metavar = o.flag.lstrip("-").replace("-", "_").upper()
        if o.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
            return kw
        if o.kind == "dict":
            kw.update(action="append", type=parse_kv_item, metavar="KEY=VALUE")
            return kw
        if o.kind == "tuple":
            elem = type(o.default[0]) if o.default else str
            kw.update(nargs=len(o.default) if o.default else "+", type=elem, metavar=metavar)
            return kw
        kind = o.hint if o.hint in (int, float, str) else str
        if o.optional:
            kind = _optional(kind)
        if flag in self.value_aliases:
            kind = _mapped(kind, self.value_aliases[flag])
        kw["type"] = kind
        allowed = self.choices.get(o.dotted)
        if allowed:
            kw["choices"] = tuple(allowed) + ((None,) if o.optional else ())
            kw["metavar"] = "{" + ",".join(map(str, allowed)) + "}"
        else:
            kw["metavar"] = metavar
        return kw

    def _help(self, o: Option) -> str:
        text = o.doc.rstrip(".")
        if o.dotted in self.extra_help:
            text = f"{text}; {self.extra_help[o.dotted]}" if text else self.extra_help[o.dotted]
        if o.kind == "dict":
            text += " (repeatable KEY=VALUE, VALUE parsed as JSON)"
        if o.dotted in self.required:
            text += " (required, on the command line or in --config)"
        else:
            text += f" (default: {_show(o.default)}"
            text += "; 'none' = None)" if o.optional and o.kind == "value" else ")"
        return text.replace("%", "%%")

    # ------------------------------------------------------------------------------------------------
    def overrides(self, args: argparse.Namespace) -> dict:
        """Nested dict of the fields set explicitly on the command line."""
        out: dict = {}
        ns = vars(args)
        for o in self.options:
            if o.dest not in ns:
                continue
            value = ns[o.dest]
            if o.kind == "dict":
                value = dict(value)
            elif o.kind == "tuple":
                value = tuple(value)
            node = out
            for part in o.path[:-1]:
                node = node.setdefault(part, {})
            node[o.path[-1]] = value
        return out

    def given(self, args: argparse.Namespace) -> list[str]:
        """Canonical flags of the config options set on the command line."""
        ns = vars(args)
        return [o.flag for o in self.options if o.dest in ns]

    def read_file(self, path: str | Path) -> dict:
        """Validated nested dict of the settings in a YAML/JSON config file (see the module docstring)."""
        data = read_config_file(path)
        names = {f.name for f in dataclasses.fields(self.cls)}
        if "config" in data and isinstance(data["config"], dict) and "config" not in names:
            data = data["config"]  # a run's config.json / pretrain.json: {"config": ..., "environment": ...}
        data = {k: v for k, v in data.items() if k not in self.ignore_keys}
        data = self._translate_legacy(data)
        return self._check(data, (), str(path))

    def _translate_legacy(self, data: dict) -> dict:
        data = json.loads(json.dumps(data))  # a deep copy of plain JSON data
        for old, (new, mapping) in self.legacy_keys.items():
            *parents, leaf = old.split(".")
            node = data
            for p in parents:
                node = node.get(p) if isinstance(node, dict) else None
            if not isinstance(node, dict) or leaf not in node:
                continue
            value = node.pop(leaf)
            value = mapping.get(value, value) if isinstance(value, str) else value
            *new_parents, new_leaf = new.split(".")
            target = data
            for p in new_parents:
                target = target.setdefault(p, {})
            target.setdefault(new_leaf, value)
        return data

    def _check(self, data: Any, path: tuple[str, ...], source: str) -> dict:
        where = ".".join(path)
        if not isinstance(data, dict):
            raise ValueError(f"{source}: {where or 'the config'} must be a mapping, "
                             f"got {type(data).__name__}")
        cls = self.sections[path]
        valid = [f.name for f in dataclasses.fields(cls)]
        out: dict = {}
        for key, value in data.items():
            if key not in valid:
                dotted = ".".join((*path, str(key)))
                raise ValueError(f"{source}: unknown key {dotted!r}; valid keys"
                                 f"{' of ' + where if where else ''}: {', '.join(valid)}")
            sub = (*path, key)
            if sub in self.sections:
                out[key] = self._check(value, sub, source)
                continue
            o = self.by_path.get(".".join(sub))
            out[key] = coerce(value, o) if o is not None else value
        return out

    # ------------------------------------------------------------------------------------------------
    def values(self, args: argparse.Namespace, *, config_file: str | Path | None = None) -> dict:
        """The merged nested dict of explicit settings: the ``--config`` file (or ``config_file``), then
        the options given on the command line (fields in neither are absent: they keep their defaults)."""
        path = config_file if config_file is not None else getattr(args, "config", None)
        values = merge(self.read_file(path) if path else {}, self.overrides(args))
        for dotted in self.required:
            node: Any = values
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node in (None, ""):
                raise ValueError(f"{self.option(dotted).flag} is required "
                                 f"(or set {dotted!r} in the --config file)")
        return values

    def resolve(self, args: argparse.Namespace, *, config_file: str | Path | None = None) -> tuple[dict, Any]:
        """``(values, config)``: :meth:`values` and the dataclass built from them (validated by its
        ``__post_init__``)."""
        values = self.values(args, config_file=config_file)
        return values, self.build(values)

    def build(self, values: dict, cls: type | None = None, path: tuple[str, ...] = ()) -> Any:
        """The dataclass from a nested dict of field values (fields not given keep their defaults)."""
        cls = cls or self.cls
        kwargs = {}
        for key, value in values.items():
            sub = (*path, key)
            kwargs[key] = self.build(value, self.sections[sub], sub) if sub in self.sections else value
        return cls(**kwargs)

    def epilog(self, extra: list[tuple[str, str]] | None = None) -> str:
        """Help epilog: the precedence rule and one line naming the old spellings."""
        pairs = self.alias_pairs() + list(extra or [])
        lines = ["Settings: command-line options > --config FILE > defaults; dict options (KEY=VALUE) merge "
                 "key by key."]
        if pairs:
            lines.append("Old spellings still accepted: " + ", ".join(f"{a} = {c}" for a, c in pairs) + ".")
        return "\n".join(textwrap.fill(line, 100, subsequent_indent="  ", break_on_hyphens=False)
                         for line in lines)


def add_hidden_alias(parser: argparse.ArgumentParser | Any, alias: str, **kwargs) -> None:
    """Register an old spelling of an option: same ``dest``, help suppressed."""
    parser.add_argument(alias, **kwargs, help=argparse.SUPPRESS)


def add_config_epilog(parser: argparse.ArgumentParser, text: str) -> None:
    """Append ``text`` to the parser's epilog (keeping its line breaks)."""
    parser.epilog = f"{parser.epilog}\n\n{text}" if parser.epilog else text
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = HelpFormatter


__all__ = ["ConfigArgs", "Option", "add_config_epilog", "add_hidden_alias", "field_docs"]
