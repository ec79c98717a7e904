"""Model discovery: fetch an upstream's model list and read each provider's shape.

One fetch per upstream per health interval; the catalog stores what comes
back and the health monitor times it. Every provider documents its own list:

- OpenAI and most compatibles: `{"object": "list", "data": [{"id", "created", "owned_by"}]}`
- OpenRouter: the same list with `context_length`, `architecture.input_modalities`,
  `supported_parameters`, `pricing`, `top_provider.max_completion_tokens`
- vLLM: the OpenAI list with `max_model_len`
- Anthropic: `{"data", "has_more", "first_id", "last_id"}` paged by `after_id`, with
  `max_input_tokens`, `max_tokens` and `capabilities.{image_input, thinking, effort}`
- Ollama (`/api/tags`): `{"models": [{"name", "model", "details"}]}`, and `/api/show`
  per model for `capabilities` and `<arch>.context_length`
- LM Studio (`/api/v0/models`): the OpenAI list with `type` (llm | vlm | embeddings),
  `max_context_length` and `capabilities`; its v1 API lists `{"models": [{"key", ...}]}`

Nothing here knows about the config's overrides; the catalog applies those.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import aiohttp

from proxy.core import jsonutil
from proxy.config.model import UpstreamConfig
from proxy.wire.registry import upstream_headers
from proxy.catalog.diagnose import provider_error

ANTHROPIC_PAGE_LIMIT = 1000
MAX_PAGES = 20            # a runaway paginator must not keep the health loop busy
OLLAMA_SHOW_LIMIT = 64    # /api/show is one POST per model; local servers hold a handful
EMPTY_RETRY_DELAYS = (0.5, 1.5)  # a server still loading answers an empty list at first


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    """What an upstream said about one model; None means it did not say."""

    id: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    vision: bool | None = None
    tools: bool | None = None
    thinking: bool | None = None
    reasoning_levels: tuple[str, ...] = ()
    supported_parameters: tuple[str, ...] = ()
    pricing: Mapping[str, Any] | None = None
    display_name: str | None = None
    created: int | None = None
    model_type: str | None = None  # llm | vlm | embeddings where the server says


class DiscoveryError(Exception):
    """The model list could not be fetched or read. Carries what `check` needs to classify it."""

    def __init__(self, message: str, *, url: str, status: int | None = None, body: bytes = b"",
                 headers: Mapping[str, str] | None = None, cause: BaseException | None = None):
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Discovery:
    models: tuple[DiscoveredModel, ...]
    latency: float  # seconds, the first list request (what the health check times)
    url: str


# ---- reading the shapes ---------------------------------------------------------------------

def parse_models(payload: Any, kind: str | None = None) -> list[DiscoveredModel]:
    """Any documented models-list payload -> DiscoveredModel per entry (unknown entries skipped)."""
    if not isinstance(payload, dict):
        raise ValueError("the models answer is not a JSON object")
    if isinstance(payload.get("data"), list):
        entries = payload["data"]
    elif isinstance(payload.get("models"), list):
        entries = payload["models"]
    else:
        raise ValueError("the models answer has neither a 'data' nor a 'models' list")
    models = []
    for entry in entries:
        model = parse_entry(entry, kind)
        if model is not None:
            models.append(model)
    return models


def parse_entry(entry: Any, kind: str | None = None) -> DiscoveredModel | None:
    if isinstance(entry, str):
        return DiscoveredModel(id=entry)
    if not isinstance(entry, dict):
        return None
    model_id = _model_id(entry, kind)
    if not model_id:
        return None
    capabilities = entry.get("capabilities")
    parameters = tuple(p for p in entry.get("supported_parameters") or () if isinstance(p, str))
    return DiscoveredModel(
        id=model_id,
        context_window=_context_window(entry),
        max_output_tokens=_max_output(entry),
        vision=_vision(entry, capabilities),
        tools=_tools(entry, capabilities, parameters),
        thinking=_thinking(capabilities, parameters),
        reasoning_levels=_effort_levels(capabilities),
        supported_parameters=parameters,
        pricing=MappingProxyType(dict(entry["pricing"])) if isinstance(entry.get("pricing"), dict) else None,
        display_name=_text(entry.get("display_name") or entry.get("name")),
        created=entry.get("created") if isinstance(entry.get("created"), int) else None,
        model_type=_text(entry.get("type")) if entry.get("type") != "model" else None,
    )


def _model_id(entry: dict, kind: str | None) -> str | None:
    # OpenAI-style "id", Ollama "name"/"model", LM Studio v1 "key"
    for key in ("id", "name", "model", "key"):
        value = entry.get(key)
        if isinstance(value, str) and value:
            if kind == "gemini" and value.startswith("models/"):
                return value[len("models/"):]  # Gemini lists "models/x"; its chat API takes "x"
            return value
    return None


def _context_window(entry: dict) -> int | None:
    # Whichever the upstream sends: OpenRouter/Groq context_length or context_window, vLLM
    # max_model_len, Anthropic max_input_tokens, LM Studio max_context_length.
    for key in ("context_length", "context_window", "max_model_len", "max_input_tokens", "max_context_length"):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    top = entry.get("top_provider")
    if isinstance(top, dict) and isinstance(top.get("context_length"), int) and top["context_length"] > 0:
        return top["context_length"]
    return None


def _max_output(entry: dict) -> int | None:
    value = entry.get("max_tokens")  # Anthropic
    top = entry.get("top_provider")
    if value is None and isinstance(top, dict):
        value = top.get("max_completion_tokens")  # OpenRouter
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _supported(capabilities: Any, name: str) -> bool | None:
    """Anthropic `{name: {supported}}`, LM Studio v1 `{name: bool}`, or a list of names."""
    if isinstance(capabilities, dict):
        value = capabilities.get(name)
        if isinstance(value, dict):
            value = value.get("supported")
        return value if isinstance(value, bool) else None
    if isinstance(capabilities, list):
        return name in capabilities
    return None


def _vision(entry: dict, capabilities: Any) -> bool | None:
    architecture = entry.get("architecture")
    if isinstance(architecture, dict) and isinstance(architecture.get("input_modalities"), list):
        return "image" in architecture["input_modalities"]  # OpenRouter
    if entry.get("type") in ("vlm", "llm"):
        return entry["type"] == "vlm" or bool(_supported(capabilities, "vision"))  # LM Studio v0
    return _first_known(capabilities, ("image_input", "vision"))


def _tools(entry: dict, capabilities: Any, parameters: tuple[str, ...]) -> bool | None:
    if parameters:
        return "tools" in parameters
    return _first_known(capabilities, ("tools", "tool_use", "trained_for_tool_use"))


def _thinking(capabilities: Any, parameters: tuple[str, ...]) -> bool | None:
    if parameters:
        return "reasoning" in parameters or "include_reasoning" in parameters
    return _first_known(capabilities, ("thinking",))


def _first_known(capabilities: Any, names: tuple[str, ...]) -> bool | None:
    """A list of capability names says yes or no for each; a mapping only for the names it has."""
    if isinstance(capabilities, list):
        return any(name in capabilities for name in names)
    for name in names:
        value = _supported(capabilities, name)
        if value is not None:
            return value
    return None


def _effort_levels(capabilities: Any) -> tuple[str, ...]:
    """Anthropic's `capabilities.effort`: each level with its own `supported` flag."""
    if not isinstance(capabilities, dict) or not isinstance(capabilities.get("effort"), dict):
        return ()
    effort = capabilities["effort"]
    if effort.get("supported") is False:
        return ()
    levels = ["none"]  # thinking is opt-in on the Messages API: leaving it out is always accepted
    for level in ("low", "medium", "high", "xhigh", "max"):
        value = effort.get(level)
        if isinstance(value, dict) and value.get("supported"):
            levels.append("xhigh" if level == "max" else level)  # our top level is xhigh
    return tuple(dict.fromkeys(levels)) if len(levels) > 1 else ()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def ollama_show_details(entry: DiscoveredModel, payload: Any) -> DiscoveredModel:
    """Fold one `/api/show` answer (capabilities list, model_info) into a tags entry."""
    if not isinstance(payload, dict):
        return entry
    capabilities = payload.get("capabilities") if isinstance(payload.get("capabilities"), list) else None
    context = None
    info = payload.get("model_info")
    if isinstance(info, dict):
        context = next((v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)), None)
    if capabilities is None:
        return entry if context is None else dataclasses.replace(entry, context_window=context)
    return dataclasses.replace(entry, context_window=context or entry.context_window,
                    vision="vision" in capabilities, tools="tools" in capabilities,
                    thinking="thinking" in capabilities)


# ---- fetching ---------------------------------------------------------------------------------

def auth_headers(upstream: UpstreamConfig) -> dict[str, str]:
    """The proxy's own credentials for an upstream, exactly as the headers middleware sends them."""
    return upstream_headers(upstream)


def server_root(base_url: str) -> str:
    """The base without its trailing version segment: where Ollama's and LM Studio's native APIs live."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


async def discover(session: aiohttp.ClientSession, upstream: UpstreamConfig, timeout: float,
                   empty_retry_delays: tuple[float, ...] = EMPTY_RETRY_DELAYS) -> Discovery:
    """Fetch and read an upstream's model list; raises DiscoveryError. An empty first answer
    is retried briefly, since a local server that is still loading lists nothing yet."""
    result = await _discover_once(session, upstream, timeout)
    for delay in empty_retry_delays:
        if result.models:
            break
        await asyncio.sleep(delay)
        retry = await _discover_once(session, upstream, timeout)
        result = Discovery(retry.models, result.latency, retry.url)
    return result


async def _discover_once(session: aiohttp.ClientSession, upstream: UpstreamConfig, timeout: float) -> Discovery:
    assert upstream.base_url is not None
    if upstream.format == "anthropic":
        return await _anthropic_pages(session, upstream, timeout)
    native = {"ollama": "/api/tags", "lmstudio": "/api/v0/models"}.get(upstream.kind or "")
    if native:
        try:
            result = await _list(session, upstream, server_root(upstream.base_url) + native, timeout)
        except DiscoveryError as exc:
            if exc.status not in (404, 405):
                raise
        else:
            if upstream.kind == "ollama":
                result = await _ollama_details(session, upstream, result, timeout)
            return result
    return await _list(session, upstream, upstream.base_url + "/models", timeout)


async def _list(session: aiohttp.ClientSession, upstream: UpstreamConfig, url: str, timeout: float,
                params: Mapping[str, str] | None = None) -> Discovery:
    started = time.monotonic()
    payload = await get_json(session, url, auth_headers(upstream), timeout, params)
    latency = time.monotonic() - started
    try:
        models = parse_models(payload, upstream.kind)
    except ValueError as exc:
        raise DiscoveryError(f"{url}: {exc}", url=url, status=200) from None
    return Discovery(tuple(models), latency, url)


async def _anthropic_pages(session: aiohttp.ClientSession, upstream: UpstreamConfig, timeout: float) -> Discovery:
    """Every page of Anthropic's list. Paging follows the wire adapter (`after_id` = `last_id`);
    entries are read here, since capabilities and effort levels are catalog metadata."""
    from proxy.wire.anthropic.adapter import next_page_params
    url = upstream.base_url + "/models"
    started = time.monotonic()
    payload = await get_json(session, url, auth_headers(upstream), timeout, {"limit": str(ANTHROPIC_PAGE_LIMIT)})
    latency = time.monotonic() - started
    models: list[DiscoveredModel] = []
    for _ in range(MAX_PAGES):
        try:
            models.extend(parse_models(payload, upstream.kind))
        except ValueError as exc:
            raise DiscoveryError(f"{url}: {exc}", url=url, status=200) from None
        params = next_page_params(payload, ANTHROPIC_PAGE_LIMIT)
        if params is None:
            break
        payload = await get_json(session, url, auth_headers(upstream), timeout, params)
    return Discovery(tuple(models), latency, url)


async def _ollama_details(session: aiohttp.ClientSession, upstream: UpstreamConfig, listed: Discovery,
                          timeout: float) -> Discovery:
    """Ollama's tags carry no context length or capabilities; /api/show does, per model."""
    url = server_root(upstream.base_url or "") + "/api/show"
    gate = asyncio.Semaphore(4)

    async def detail(entry: DiscoveredModel) -> DiscoveredModel:
        async with gate:
            try:
                payload = await post_json(session, url, auth_headers(upstream), {"model": entry.id}, timeout)
            except DiscoveryError:
                return entry  # the list itself answered; a missing detail is not a failed check
            return ollama_show_details(entry, payload)

    head = list(listed.models[:OLLAMA_SHOW_LIMIT])
    detailed = await asyncio.gather(*(detail(entry) for entry in head))
    return Discovery(tuple(detailed) + listed.models[OLLAMA_SHOW_LIMIT:], listed.latency, listed.url)


async def get_json(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], timeout: float,
                   params: Mapping[str, str] | None = None) -> Any:
    return await _request_json(session, "GET", url, headers, timeout, params=params)


async def post_json(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], body: Any,
                    timeout: float) -> Any:
    return await _request_json(session, "POST", url, headers, timeout, body=body)


async def _request_json(session: aiohttp.ClientSession, method: str, url: str, headers: Mapping[str, str],
                        timeout: float, *, params: Mapping[str, str] | None = None, body: Any = None) -> Any:
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    data = jsonutil.dumps(body) if body is not None else None
    request_headers = dict(headers)
    if data is not None:
        request_headers["Content-Type"] = "application/json"
    try:
        # Redirects are not followed: aiohttp drops only Authorization on a cross-origin hop, so
        # x-api-key and configured headers would travel to wherever the Location points.
        async with session.request(method, url, headers=request_headers, params=params, data=data,
                                   timeout=client_timeout, allow_redirects=False) as response:
            raw = await response.read()
            if 300 <= response.status < 400:
                location = response.headers.get("Location", "elsewhere")
                raise DiscoveryError(f"{url} answered HTTP {response.status} redirecting to {location}; set base_url "
                                     f"to the final address (keys are never sent after a redirect)",
                                     url=url, status=response.status, body=b"", headers=response.headers)
            if response.status >= 400:
                said = provider_error(raw).message[:300]
                raise DiscoveryError(f"{url} answered HTTP {response.status}" + (f": {said}" if said else ""),
                                     url=url, status=response.status, body=raw, headers=response.headers)
            try:
                return jsonutil.loads(raw)
            except ValueError:
                kind = response.headers.get("Content-Type", "unknown type")
                raise DiscoveryError(f"{url} answered {kind}, not JSON", url=url, status=response.status,
                                     body=raw[:2048], headers=response.headers) from None
    except DiscoveryError:
        raise
    except asyncio.TimeoutError as exc:
        raise DiscoveryError(f"{url}: no answer within {timeout:g} s", url=url, cause=exc) from None
    except aiohttp.ClientError as exc:
        raise DiscoveryError(f"{url}: {exc}", url=url, cause=exc) from None
