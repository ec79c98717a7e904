"""Client model name -> ordered targets.

Resolution order (PRODUCT.md): an alias under `models:`; else `upstream/model`
where the prefix is an upstream name; else a model id that exactly one
upstream declares or discovered. Anything else: 404 with close matches.
"""
from __future__ import annotations

import difflib
from typing import Callable, Collection

from proxy.config.formats import FORMATS
from proxy.config.model import Config, UpstreamConfig
from proxy.core.errors import InvalidRequest, ModelNotFound
from proxy.core.exchange import Target

# upstream name -> model ids it discovered from its catalog (a set-like; empty when unknown)
DiscoveredModels = Callable[[str], Collection[str]]


class Router:
    def __init__(self, config: Config, discovered: DiscoveredModels | None = None):
        self.config = config
        self._discovered = discovered or (lambda name: ())
        self._aliases = {name: self._alias_targets(name) for name in config.models}

    def resolve(self, model: str | None) -> tuple[Target, ...]:
        if model is None:
            return self._default_targets()
        if model in self._aliases:
            return self._aliases[model]
        upstream_name, slash, model_id = model.partition("/")
        if slash and model_id and upstream_name in self.config.upstreams:
            return (self._target(self.config.upstreams[upstream_name], model_id),)
        owners = self._owners(model)
        if len(owners) == 1:
            return (self._target(owners[0], model),)
        if len(owners) > 1:
            names = ", ".join(f"{owner.name}/{model}" for owner in owners)
            raise InvalidRequest(f"model '{model}' is offered by several upstreams; ask for one of: {names}",
                                 param="model", code="ambiguous_model")
        raise ModelNotFound(self._not_found_message(model), param="model")

    def _alias_targets(self, alias: str) -> tuple[Target, ...]:
        settings = self.config.models[alias]
        targets = []
        for spec in settings.targets:
            upstream_name, _, model_id = spec.partition("/")
            upstream = self.config.upstreams[upstream_name]
            targets.append(Target(upstream, model_id, alias, settings, upstream.models.get(model_id)))
        return tuple(targets)

    @staticmethod
    def _target(upstream: UpstreamConfig, model_id: str) -> Target:
        return Target(upstream, model_id, model_config=upstream.models.get(model_id))

    def _owners(self, model: str) -> list[UpstreamConfig]:
        return [upstream for upstream in self.config.upstreams.values()
                if model in upstream.models or model in self._discovered(upstream.name)]

    def _default_targets(self) -> tuple[Target, ...]:
        upstream = self.default_upstream()
        if upstream is None:
            raise InvalidRequest("this request names no model and no OpenAI-format upstream is configured",
                                 param="model")
        return (Target(upstream, ""),)

    def stored_at(self, api: str) -> tuple[Target, ...]:
        """Where a response an upstream stored is read (GET/DELETE /v1/responses/{its id}): the first
        upstream speaking `api` natively, else the default upstream."""
        native = next((u for u in self.config.upstreams.values() if FORMATS[u.format].native_api == api), None)
        return (Target(native, ""),) if native is not None else self._default_targets()

    def default_upstream(self) -> UpstreamConfig | None:
        """`default_upstream`, else the first upstream whose format may be a default (OpenAI, mock)."""
        if self.config.default_upstream:
            return self.config.upstreams[self.config.default_upstream]
        return next((u for u in self.config.upstreams.values() if FORMATS[u.format].default_upstream), None)

    def known_names(self) -> list[str]:
        names = list(self.config.models)
        for upstream in self.config.upstreams.values():
            for model_id in list(upstream.models) + list(self._discovered(upstream.name)):
                names.append(model_id)
                names.append(f"{upstream.name}/{model_id}")
        return names

    def _not_found_message(self, model: str) -> str:
        close = difflib.get_close_matches(model, self.known_names(), n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        upstreams = ", ".join(self.config.upstreams)
        return (f"The model '{model}' does not exist here: it is not an alias, not upstream/model "
                f"for a configured upstream ({upstreams}), and no single upstream offers it.{hint}")
