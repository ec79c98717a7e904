"""The reasoning middleware: one effort vocabulary in, each provider's native form out.

On the way out it rewrites the chat body for the current attempt's target
(`proxy.core.reasoning.rewrite_request`: precedence, dialect, budgets). It runs per
attempt, inside fallback, so each target gets its own dialect from the same
client body, which is never mutated.

On the way back, for upstreams with `normalize_reasoning: true`, OpenRouter's
`reasoning` / `reasoning_details` are mapped to `reasoning_content` on messages
and stream deltas, event by event; only the events it changes are re-encoded.
With the setting off (the default) responses pass through untouched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from proxy.api import Handler, PluginContext, ProxyRequest, ProxyResponse, SSEEvent, Target
from proxy.config.model import EFFORT_LEVELS, MIN_THINKING_BUDGET
from proxy.core import reasoning
from proxy.streams.guard import FilteredStream

# Cheap byte test before any JSON parsing: most chunks carry no reasoning at all.
_REASONING_MARK = b'"reasoning'


@dataclass(frozen=True, slots=True)
class ReasoningSettings:
    """The config file's `reasoning:` section: thinking budgets (tokens) per effort level,
    for budget-style upstreams. Built and checked once, at load."""

    budgets: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(
        {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}))

    def problems(self) -> Iterator[tuple[str, str]]:
        for level, budget in self.budgets.items():
            if level not in EFFORT_LEVELS:
                yield f"budgets.{level}", f"unknown level; use {', '.join(EFFORT_LEVELS)}"
            elif budget < MIN_THINKING_BUDGET and level != "none":
                yield f"budgets.{level}", f"a thinking budget must be at least {MIN_THINKING_BUDGET} tokens (Anthropic's minimum)"


class ReasoningMiddleware:
    def __init__(self, budgets: Mapping[str, int], catalog: Any = None):
        self._budgets = dict(budgets)
        self._catalog = catalog

    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        target = request.target
        if target is None or not request.is_chat or not isinstance(request.body, dict):
            return await call_next(request)
        accepted, default = self._advertised(target)
        body = reasoning.rewrite_request(
            request.body, target.upstream, target.alias_config, target.model_config, self._budgets,
            accepted=accepted, advertised_default=default, model_label=target.label)
        if body is not request.body:
            request = request.replace(body=body)
        response = await call_next(request)
        if target.upstream.normalize_reasoning and 200 <= response.status < 300:
            _normalize(response)
        return response

    def _advertised(self, target: Target) -> tuple[Sequence[str], str | None]:
        """Levels and default the upstream's catalog advertises, else the configured `reasoning_levels`.

        The catalog is asked through `reasoning_levels(upstream, model) -> (levels, default) | None`
        when it offers that; config values win over discovered ones either way.
        """
        settings = target.model_config
        if settings is not None and settings.reasoning_levels:
            return tuple(settings.reasoning_levels), None
        lookup = getattr(self._catalog, "reasoning_levels", None)
        if lookup is not None:
            found = lookup(target.upstream.name, target.model)
            if found:
                levels, default = found
                return tuple(levels), default
        return (), None


def _normalize(response: ProxyResponse) -> None:
    if response.events is not None:
        response.events = _normalized_events(response.events)
    elif response.body:
        response.body = reasoning.normalize_payload(response.body)


def _normalized_events(events: AsyncIterator[SSEEvent]) -> AsyncIterator[SSEEvent]:
    return FilteredStream(events, _normalized_event)


def _normalized_event(event: SSEEvent) -> SSEEvent:
    if _REASONING_MARK not in event.raw or event.is_done:
        return event
    try:
        chunk = event.json()
    except ValueError:
        return event  # not ours to judge: passed on as it came
    if not reasoning.normalize_completion(chunk):
        return event
    return SSEEvent.from_json(chunk, event.event)


def create(context: PluginContext) -> ReasoningMiddleware:
    return ReasoningMiddleware(context.config.reasoning.budgets, getattr(context.services, "catalog", None))
