"""The model catalog: aliases, declared and discovered models, with their metadata.

Discovered lists are stored raw per upstream and the config is applied when a
view is built, so a value set in the config always wins and no refresh can
overwrite it. Views are rebuilt only when something changed (a refresh or a
reload); the request path reads them and never waits on the network.
"""
from __future__ import annotations

import dataclasses
import difflib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from proxy.catalog.discovery import DiscoveredModel, Discovery, ListClient, discover
from proxy.config.formats import FORMATS
from proxy.config.model import EFFORT_LEVELS, AliasConfig, Config, ModelSettings, UpstreamConfig
from proxy.core.reasoning import levels_for

DEFAULT_CONTEXT_WINDOW = 128_000  # when neither the config nor the upstream says


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One upstream model as the catalog presents it: config values over discovered ones."""

    upstream: str
    id: str
    context_window: int
    vision: bool | None
    tools: bool | None
    thinking: bool | None
    reasoning_levels: tuple[str, ...]
    reasoning_default: str | None
    max_output_tokens: int | None
    declared: bool
    discovered: DiscoveredModel | None

    def metadata(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "context_window": self.context_window,
            "capabilities": {"vision": self.vision, "tools": self.tools, "thinking": self.thinking},
        }
        if self.max_output_tokens:
            fields["max_output_tokens"] = self.max_output_tokens
        if self.reasoning_levels or self.reasoning_default:
            fields["reasoning"] = {"levels": list(self.reasoning_levels), "default": self.reasoning_default}
        if self.discovered is not None and self.discovered.pricing is not None:
            fields["pricing"] = dict(self.discovered.pricing)
        return fields


class Catalog:
    def __init__(self, config: Config, *, empty_retry_delays: tuple[float, ...] | None = None):
        self._config = config
        self._discovered: dict[str, tuple[DiscoveredModel, ...]] = {}
        self._discovered_ids: dict[str, frozenset[str]] = {}
        self._entries: dict[str, tuple[ModelEntry, ...]] | None = None
        self._index: dict[tuple[str, str], ModelEntry] = {}
        self._payload: dict[str, Any] | None = None
        # Called with (upstream, model ids) after each stored discovery (metrics label sets).
        self.listeners: list[Callable[[str, frozenset[str]], None]] = []
        # Its own connections (one pool per origin): catalog fetches never take client traffic's.
        self._client = ListClient()
        self._empty_retry_delays = empty_retry_delays
        self.created = int(time.time())

    # ---- config and discovery -----------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    def apply_config(self, config: Config) -> None:
        """A reload: keep what each unchanged upstream discovered, forget the rest."""
        kept = {}
        for name, models in self._discovered.items():
            old, new = self._config.upstreams.get(name), config.upstreams.get(name)
            if old is not None and new is not None and new.discover_models and \
                    (old.base_url, old.format, old.kind) == (new.base_url, new.format, new.kind):
                kept[name] = models
        self._config = config
        self._discovered = kept
        self._discovered_ids = {name: frozenset(m.id for m in models) for name, models in kept.items()}
        self._invalidate()

    def record(self, upstream: str, models: Sequence[DiscoveredModel]) -> None:
        """Store a fresh discovery for an upstream (ignored when it is gone or opted out)."""
        settings = self._config.upstreams.get(upstream)
        if settings is None or not settings.discover_models:
            return
        ids = frozenset(model.id for model in models)
        self._discovered[upstream] = tuple(models)
        self._discovered_ids[upstream] = ids
        self._invalidate()
        for listener in self.listeners:
            listener(upstream, ids)

    async def refresh(self, upstream: str, timeout: float | None = None) -> Discovery:
        """Fetch one upstream's list and store it; raises DiscoveryError. Runs in the background
        (health loop, startup) only: nothing on the request path awaits it."""
        settings = self._config.upstreams[upstream]
        if not FORMATS[settings.format].networked or settings.base_url is None:
            return Discovery((), 0.0, "mock:")  # built in: only its declared models, no network
        limit = timeout if timeout is not None else self._config.health.timeout
        kwargs = {} if self._empty_retry_delays is None else {"empty_retry_delays": self._empty_retry_delays}
        result = await discover(self._client, settings, limit, **kwargs)
        if self._config.upstreams.get(upstream) is settings:  # not replaced by a reload meanwhile
            self.record(upstream, result.models)
        return result

    async def close(self) -> None:
        self._client.close()

    # ---- lookups (request path: plain reads) -------------------------------------------------------

    def discovered(self, upstream: str) -> frozenset[str]:
        """The model ids an upstream discovered: the router's lookup for bare model ids."""
        return self._discovered_ids.get(upstream, frozenset())

    def entries(self, upstream: str) -> tuple[ModelEntry, ...]:
        return self._all_entries().get(upstream, ())

    def entry(self, upstream: str, model_id: str) -> ModelEntry | None:
        self._all_entries()
        return self._index.get((upstream, model_id))

    def reasoning_levels(self, upstream: str, model_id: str) -> tuple[tuple[str, ...], str | None] | None:
        """(levels, default) the reasoning middleware may use for a model; None when unknown."""
        entry = self.entry(upstream, model_id)
        if entry is None or not (entry.reasoning_levels or entry.reasoning_default):
            return None
        return entry.reasoning_levels, entry.reasoning_default

    def model_count(self, upstream: str) -> int:
        return len(self.entries(upstream))

    def close_matches(self, name: str, limit: int = 5) -> list[str]:
        return difflib.get_close_matches(name, self._known_names(), n=limit, cutoff=0.5)

    def models_payload(self) -> dict[str, Any]:
        """The body of GET /v1/models."""
        if self._payload is None:
            data = [self._alias_json(name, alias) for name, alias in self._config.models.items()]
            for name, entries in self._all_entries().items():
                data.extend(self._model_json(entry) for entry in entries)
            self._payload = {"object": "list", "data": data}
        return self._payload

    # ---- building views ------------------------------------------------------------------------

    def _invalidate(self) -> None:
        """Rebuild the merged view now, in the background task that changed it, so the first
        request after a refresh does not pay for merging hundreds of models."""
        self._entries = None
        self._payload = None
        self._all_entries()

    def _all_entries(self) -> dict[str, tuple[ModelEntry, ...]]:
        if self._entries is None:
            entries = {name: tuple(self._build_entries(upstream))
                       for name, upstream in self._config.upstreams.items()}
            self._index = {(e.upstream, e.id): e for group in entries.values() for e in group}
            self._entries = entries
        return self._entries

    def _build_entries(self, upstream: UpstreamConfig) -> Iterable[ModelEntry]:
        found = {model.id: model for model in self._discovered.get(upstream.name, ())}
        for model_id, settings in upstream.models.items():
            yield merge(upstream, model_id, settings, found.get(model_id))
        for model_id, model in found.items():
            if model_id not in upstream.models:
                yield merge(upstream, model_id, None, model)

    def _model_json(self, entry: ModelEntry) -> dict[str, Any]:
        listed = {"id": f"{entry.upstream}/{entry.id}", "object": "model",
                  "created": (entry.discovered.created if entry.discovered and entry.discovered.created
                              else self.created),
                  "owned_by": entry.upstream}
        listed.update(entry.metadata())
        return listed

    def _alias_json(self, name: str, alias: AliasConfig) -> dict[str, Any]:
        first_upstream, _, first_model = alias.targets[0].partition("/") if alias.targets else ("", "", "")
        listed: dict[str, Any] = {"id": name, "object": "model", "created": self.created,
                                  "owned_by": first_upstream, "targets": list(alias.targets)}
        if alias.description:
            listed["description"] = alias.description
        first = self._target_entry(first_upstream, first_model)
        if first is not None:
            listed.update(first.metadata())
            if alias.reasoning_effort and first.thinking is not False:
                levels = list(first.reasoning_levels or EFFORT_LEVELS)
                listed["reasoning"] = {"levels": levels, "default": alias.reasoning_effort}
        return listed

    def _target_entry(self, upstream_name: str, model_id: str) -> ModelEntry | None:
        upstream = self._config.upstreams.get(upstream_name)
        if upstream is None:
            return None
        known = self.entry(upstream_name, model_id)
        return known if known is not None else merge(upstream, model_id, None, None)

    def _known_names(self) -> list[str]:
        names = list(self._config.models)
        for upstream, entries in self._all_entries().items():
            for entry in entries:
                names.extend((entry.id, f"{upstream}/{entry.id}"))
        return names


# ---- merging one model --------------------------------------------------------------------

def merge(upstream: UpstreamConfig, model_id: str, settings: ModelSettings | None,
          found: DiscoveredModel | None) -> ModelEntry:
    """Config values over discovered values over what the upstream's kind implies."""
    settings = settings or ModelSettings()
    thinking = _pick(settings.thinking, found.thinking if found else None)
    levels, default = _reasoning(upstream, settings, found, thinking)
    return ModelEntry(
        upstream=upstream.name,
        id=model_id,
        context_window=_pick(settings.context_window, found.context_window if found else None,
                             DEFAULT_CONTEXT_WINDOW),
        vision=_pick(settings.vision, found.vision if found else None),
        # Every Messages-API model takes tools; the Anthropic list does not say so per model.
        tools=_pick(settings.tools, found.tools if found else None,
                    FORMATS[upstream.format].tools),
        thinking=thinking,
        reasoning_levels=levels,
        reasoning_default=default,
        max_output_tokens=_pick(settings.max_tokens, found.max_output_tokens if found else None),
        declared=model_id in upstream.models,
        discovered=found,
    )


def _pick(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _reasoning(upstream: UpstreamConfig, settings: ModelSettings, found: DiscoveredModel | None,
               thinking: bool | None) -> tuple[tuple[str, ...], str | None]:
    """Levels and default as the reasoning middleware will read them: configured levels, else
    those the upstream listed, else what the model's thinking flag implies (proxy.core.reasoning)."""
    levels = settings.reasoning_levels or (found.reasoning_levels if found is not None else ())
    merged = dataclasses.replace(settings, thinking=thinking, reasoning_levels=tuple(levels))
    return levels_for(upstream.kind or "generic", merged)
