"""The registry of upstream wire formats, and what the rest of the proxy may know about each:
data, no behaviour.

A wire format is one module under proxy/wire/ (its adapter) plus one entry here. Config
validation, URL normalization, auth defaults, routing and the catalog read these facts
instead of branching on a format's name; everything else about a format (encoding, decoding,
errors, model listing, the probe) is its adapter's, found through proxy/wire/registry.py.
It lives in config/ because config is validated against it at load, and config sits below wire/.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True, slots=True)
class FormatSpec:
    name: str
    # The module holding `ADAPTER`, loaded on first use.
    adapter: str
    # How the key is sent unless the upstream's `auth:` says otherwise: "bearer" or "x-api-key".
    auth: str = "bearer"
    # The upstream kind assumed when no well-known host says otherwise.
    default_kind: str = "generic"
    # Endpoint paths users paste by mistake at the end of a base URL; stripped at load.
    trailing_endpoints: tuple[str, ...] = ()
    # False for the built-in mock: it needs no base_url and opens no connection.
    networked: bool = True
    # Forwards any other /v1/* path (embeddings, audio, ...) as raw bytes.
    serves_other_paths: bool = False
    # May be the default upstream for requests that name no model.
    default_upstream: bool = False
    # The reasoning dialect every model of this format speaks (None: decided by the kind).
    reasoning_dialect: Optional[str] = None
    # Whether every model of this format takes tools (None: unknown, ask the catalog).
    tools: Optional[bool] = None
    # The inbound API this format speaks natively: a request in it is passed through, not translated.
    native_api: Optional[str] = None


FORMATS: dict[str, FormatSpec] = {spec.name: spec for spec in (
    FormatSpec("openai", "proxy.wire.openai", trailing_endpoints=("/chat/completions", "/completions"),
               serves_other_paths=True, default_upstream=True, native_api="chat"),
    FormatSpec("anthropic", "proxy.wire.anthropic.adapter", auth="x-api-key", default_kind="anthropic",
               trailing_endpoints=("/messages",), reasoning_dialect="budget", tools=True, native_api="messages"),
    FormatSpec("responses", "proxy.wire.responses.adapter", trailing_endpoints=("/responses",),
               serves_other_paths=True, reasoning_dialect="effort", native_api="responses"),
    # The built-in mock answers in-process (proxy/upstream/mock.py) in the OpenAI format.
    FormatSpec("mock", "proxy.wire.openai", networked=False, serves_other_paths=True, default_upstream=True),
)}


def spec_of(name: str) -> FormatSpec:
    return FORMATS[name]
