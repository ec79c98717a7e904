"""`options:` — raw provider JSON deep-merged into the outgoing native body.

Applied after wire translation and every preset, so it always wins. Layers
merge upstream < model < alias. Mappings merge key by key; any other value
replaces; a null removes the key (to drop a field a preset added).
"""
from __future__ import annotations

from typing import Any, Mapping

from proxy.config.schema import thaw
from proxy.core.exchange import Target


def merge_options(body: dict[str, Any], target: Target) -> dict[str, Any]:
    for layer in option_layers(target):
        body = deep_merge(body, layer)
    return body


def option_layers(target: Target) -> tuple[Mapping[str, Any], ...]:
    """The `options:` that apply to `target`, in the order they merge: upstream, model, alias."""
    layers = (target.upstream.options,
              target.model_config.options if target.model_config else None,
              target.alias_config.options if target.alias_config else None)
    return tuple(layer for layer in layers if layer)


def deep_merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `overlay` merged into `base` (neither is mutated)."""
    merged = dict(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = thaw(value)
    return merged
