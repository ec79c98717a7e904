"""Typed YAML: build frozen dataclasses from a YAML node tree, collecting every
problem with its dotted path and line number instead of stopping at the first.

The field types of the target dataclass are the schema. Supported: str, int,
float, bool, Secret, Literal[...], Optional[X], tuple[X, ...],
Mapping[str, X], nested dataclasses, and JSONValue (raw JSON, frozen).
A field's `metadata["check"]` is a callable returning an error message or None.
A dataclass may declare `SHORTHAND = "field"` so a bare scalar means {field: scalar}.
A field's `metadata["section"]` ("module:Class") names a settings class that lives beside the
middleware owning it; it is loaded by name, as the chain loads built-ins, so config stays the
lowest layer and never imports a plugin.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from proxy.config.secrets import (ENC_PREFIX, Keyring, Secret, SecretError, has_env_reference, redact_config, remember,
                                  resolve)


class JSONValue:
    """Marker type: any YAML value, kept as frozen JSON (MappingProxy / tuple)."""


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        # The one place problems become text: a value from ${ENV} or enc: is never quoted back.
        return redact_config(f"{self.path or '<root>'}{where}: {self.message}")


class Builder:
    """One pass over a document; `problems` collects everything wrong with it."""

    def __init__(self, keyring: Keyring, environ: Mapping[str, str] | None = None):
        self.keyring = keyring
        self.environ = environ
        self.problems: list[Problem] = []

    def fail(self, path: str, node: Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(Problem(path, line, message))

    # ---- entry points -----------------------------------------------------------------

    def build(self, cls: type, node: Node | None, path: str = "") -> Any:
        return self._convert(cls, node, path)

    # ---- conversion by type ---------------------------------------------------------------

    def _convert(self, hint: Any, node: Node | None, path: str) -> Any:
        origin = typing.get_origin(hint)
        if origin in (Union, types.UnionType):
            return self._optional(hint, node, path)
        if node is None or _is_null(node):
            return self._null(hint, node, path)
        if origin is Literal:
            return self._literal(hint, node, path)
        if origin is tuple:
            return self._sequence(typing.get_args(hint)[0], node, path)
        if origin in _MAPPING_ORIGINS:
            return self._mapping(typing.get_args(hint)[1], node, path)
        if hint is JSONValue:
            return self._json(node, path)
        if dataclasses.is_dataclass(hint):
            return self._dataclass(hint, node, path)
        return self._scalar(hint, node, path)

    def _optional(self, hint: Any, node: Node | None, path: str) -> Any:
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if node is None or _is_null(node):
            return None
        return self._convert(inner[0], node, path)

    def _null(self, hint: Any, node: Node | None, path: str) -> Any:
        if dataclasses.is_dataclass(hint):
            return self._dataclass(hint, None, path)
        if typing.get_origin(hint) is tuple:
            return ()
        if typing.get_origin(hint) in _MAPPING_ORIGINS:
            return types.MappingProxyType({})
        if hint is JSONValue:
            return None
        self.fail(path, node, "a value is required here")
        return None

    def _literal(self, hint: Any, node: Node, path: str) -> Any:
        allowed = typing.get_args(hint)
        value = self._plain(node, path)
        if value is _BAD:
            return None
        if isinstance(value, str):
            value = value.strip()
        elif isinstance(value, bool) and node.value in allowed:
            value = node.value  # YAML 1.1 reads a bare off/on/no/yes as a boolean; the word was meant
        if value not in allowed:
            choices = ", ".join(str(choice) for choice in allowed)
            self.fail(path, node, f"must be one of {choices} (got {value!r})")
            return None
        return value

    def _sequence(self, item_hint: Any, node: Node, path: str) -> tuple:
        if not isinstance(node, SequenceNode):
            if isinstance(node, ScalarNode):  # a single item where a list is expected
                return (self._convert(item_hint, node, f"{path}[0]"),)
            self.fail(path, node, "must be a list")
            return ()
        return tuple(self._convert(item_hint, item, f"{path}[{index}]") for index, item in enumerate(node.value))

    def _mapping(self, value_hint: Any, node: Node, path: str) -> Mapping[str, Any]:
        if isinstance(node, SequenceNode):  # a list of names: each with default settings
            entries = {}
            for index, item in enumerate(node.value):
                key = self._plain(item, f"{path}[{index}]")
                if isinstance(key, (str, int, float)):
                    entries[str(key)] = self._convert(value_hint, None, f"{path}.{key}")
                else:
                    self.fail(f"{path}[{index}]", item, "must be a name")
            return types.MappingProxyType(entries)
        if not isinstance(node, MappingNode):
            self.fail(path, node, "must be a mapping")
            return types.MappingProxyType({})
        entries = {}
        for key_node, value_node in self._pairs(node, path):
            key = str(key_node.value)
            entries[key] = self._convert(value_hint, value_node, _join(path, key))
        return types.MappingProxyType(entries)

    def _dataclass(self, cls: type, node: Node | None, path: str) -> Any:
        if isinstance(node, (ScalarNode, SequenceNode)) and not _is_null(node) and getattr(cls, "SHORTHAND", None):
            node = MappingNode("tag:yaml.org,2002:map",
                               [(ScalarNode("tag:yaml.org,2002:str", cls.SHORTHAND, node.start_mark, node.end_mark), node)],
                               node.start_mark, node.end_mark)
        if node is not None and not isinstance(node, MappingNode):
            self.fail(path, node, "must be a mapping")
            node = None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
        given: dict[str, tuple[Node, Node]] = {}
        if node is not None:
            for key_node, value_node in self._pairs(node, path):
                name = str(key_node.value)
                if name not in fields:
                    self.fail(_join(path, name), key_node, _unknown_key_message(name, fields))
                    continue
                given[name] = (key_node, value_node)
        values: dict[str, Any] = {}
        for name, field in fields.items():
            field_path = _join(path, name)
            if name in given:
                value_node = given[name][1]
                value = self._convert(_field_type(field, hints), value_node, field_path)
                self._check(field, value, field_path, value_node)
                values[name] = value
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                if dataclasses.is_dataclass(hints[name]):
                    values[name] = self._dataclass(hints[name], None, field_path)
                else:
                    self.fail(field_path, node, "is required")
        try:
            built = cls(**values)
        except (TypeError, ValueError) as exc:
            self.fail(path, node, str(exc))
            return None
        return built

    def _check(self, field: dataclasses.Field, value: Any, path: str, node: Node) -> None:
        check: Callable[[Any], str | None] | None = field.metadata.get("check")
        if check is not None and value is not None:
            message = check(value)
            if message:
                self.fail(path, node, message)

    def _scalar(self, hint: Any, node: Node, path: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.fail(path, node, f"must be a {_type_name(hint)}, not a {'list' if isinstance(node, SequenceNode) else 'mapping'}")
            return None
        value = self._plain(node, path)
        if value is _BAD:
            return None
        if hint is Secret:
            return Secret(str(value)) if value is not None else None
        if hint is str:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)  # e.g. a status code in fallback_on
            if isinstance(value, bool) or value is None:
                self.fail(path, node, f"must be text (got {node.value!r}; quote it)")
                return None
            return str(value)
        if hint is bool:
            if not isinstance(value, bool):
                self.fail(path, node, f"must be true or false (got {node.value!r})")
                return None
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(path, node, f"must be a whole number (got {node.value!r})")
                return None
            return value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(path, node, f"must be a number (got {node.value!r})")
                return None
            return float(value)
        self.fail(path, node, f"unsupported schema type {hint!r}")
        return None

    def _json(self, node: Node, path: str) -> Any:
        if isinstance(node, MappingNode):
            return types.MappingProxyType({str(k.value): self._json(v, _join(path, str(k.value)))
                                           for k, v in self._pairs(node, path)})
        if isinstance(node, SequenceNode):
            return tuple(self._json(item, f"{path}[{index}]") for index, item in enumerate(node.value))
        value = self._plain(node, path)
        return None if value is _BAD else value

    # ---- leaves -------------------------------------------------------------------------------

    def _plain(self, node: Node, path: str) -> Any:
        """A scalar's Python value, with `${ENV}` and `enc:` resolved in strings."""
        try:
            value = _CONSTRUCTOR.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.fail(path, node, f"cannot read value: {exc}")
            return _BAD
        if isinstance(value, str) and (value.startswith(ENC_PREFIX) or has_env_reference(value)):
            try:
                resolved = resolve(value, self.keyring, self.environ)
            except SecretError as exc:
                self.fail(path, node, str(exc))
                return _BAD
            if value.startswith(ENC_PREFIX):
                remember(resolved)
            return resolved
        return value

    def _pairs(self, node: MappingNode, path: str):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(path, key_node, "keys must be plain names")
                continue
            key = str(key_node.value)
            if key in seen:
                self.fail(_join(path, key), key_node, "is given twice")
                continue
            seen.add(key)
            yield key_node, value_node


_BAD = object()
_MAPPING_ORIGINS = (collections.abc.Mapping, dict)
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def load_section(owner: str) -> type:
    """The settings class named "module:Class" by a section field."""
    module_name, _, class_name = owner.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _field_type(field: dataclasses.Field, hints: Mapping[str, Any]) -> Any:
    owner = field.metadata.get("section")
    return load_section(owner) if owner else hints[field.name]


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(hint: Any) -> str:
    return {str: "text value", int: "whole number", float: "number", bool: "boolean"}.get(hint, "value")


def _unknown_key_message(name: str, fields: Mapping[str, Any]) -> str:
    import difflib
    close = difflib.get_close_matches(name, list(fields), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{name}'{hint} (known: {', '.join(sorted(fields))})"


def compose(text: str, source: str) -> tuple[Node | None, Problem | None]:
    """Parse YAML into a node tree, or a Problem that points at the syntax error."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        return None, Problem(source, line, f"YAML syntax error: {exc.problem}")
    except yaml.YAMLError as exc:
        return None, Problem(source, None, f"YAML error: {exc}")


def thaw(value: Any) -> Any:
    """A mutable deep copy of a frozen JSONValue (for merging into request bodies)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


class LineIndex:
    """Line numbers by dotted path, for problems found after the typed build."""

    def __init__(self, root: Any):
        self._lines: dict[str, int] = {}
        if root is not None:
            self._walk(root, "")

    def _walk(self, node: Any, path: str) -> None:
        self._lines[path] = node.start_mark.line + 1
        value = getattr(node, "value", None)
        if isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, tuple):
                    key, child = item
                    child_path = f"{path}.{key.value}" if path else str(key.value)
                    self._lines[child_path] = key.start_mark.line + 1
                    self._walk_child(child, child_path)
                else:
                    self._walk_child(item, f"{path}[{index}]")

    def _walk_child(self, node: Any, path: str) -> None:
        line = self._lines.get(path)
        self._walk(node, path)
        if line is not None:
            self._lines[path] = line  # keep the key's line, it is what a reader looks for

    def line(self, path: str) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path.rpartition(".")[0]
        return self._lines.get("")
