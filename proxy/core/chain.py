"""The middleware contract and the chain builder.

A middleware is any object with

    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse

and optionally `async def startup(self)` / `async def shutdown(self)`.
Built-ins and user plugins share that shape. Each built-in module in
`plugins/` exposes `create(context) -> middleware | None` (None: nothing to do
for this config); a user plugin is a dotted path to a class or factory that is
called with the same PluginContext.

The chain is built once per config generation; the transport is appended by
the builder as the fixed end, never placed by the user. Order, outermost first:
BUILTIN_ORDER with user plugins inserted at USER_PLUGINS_AT.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Protocol, runtime_checkable

from proxy.config.model import Config, PluginSpec
from proxy.config.schema import thaw
from proxy.config.secrets import redact_config
from proxy.core.exchange import ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from proxy.core.services import Services

Handler = Callable[[ProxyRequest], Awaitable[ProxyResponse]]


@runtime_checkable
class Middleware(Protocol):
    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse: ...


@dataclass(frozen=True)
class PluginContext:
    """What a middleware factory may look at: the frozen config, its own options,
    and the long-lived services (metrics, limiters, health) shared across reloads."""

    config: Config
    services: "Services"
    options: Mapping[str, Any] = field(default_factory=dict)


# Outermost first. Per-request concerns sit outside per-attempt ones: fallback
# loops over targets and calls everything inside it once per attempt.
BUILTIN_ORDER: tuple[str, ...] = (
    "plugins.observe",  # outermost: sees each request once, and its stream end, for metrics and logs
    "plugins.fallback",
    "plugins.concurrency",
    "plugins.reasoning",
    "plugins.headers",
    "plugins.streaming",
)
# User plugins run per attempt, after a slot is held and before wire details.
USER_PLUGINS_AT = BUILTIN_ORDER.index("plugins.reasoning")


class PluginLoadError(Exception):
    pass


def load_builtin(module_name: str, context: PluginContext) -> Middleware | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # a built-in that this build does not ship
        raise
    return module.create(context)


def load_user_plugin(spec: PluginSpec, context: PluginContext) -> Middleware:
    module_name, _, attribute = spec.path.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise PluginLoadError(redact_config(f"plugin '{spec.path}' cannot be loaded: {exc}")) from None
    plugin_context = PluginContext(context.config, context.services, thaw(spec.options) or {})
    try:
        middleware = factory(plugin_context)
    except Exception as exc:  # a broken plugin must stop startup with its name, not a traceback
        # its message may quote its options, which may hold a value from ${ENV}
        raise PluginLoadError(redact_config(f"plugin '{spec.path}' failed to start: {type(exc).__name__}: {exc}")) \
            from None
    if not callable(middleware) or not inspect.iscoroutinefunction(getattr(middleware, "__call__", None)):
        raise PluginLoadError(f"plugin '{spec.path}' must produce an object with async __call__(request, call_next)")
    return middleware


def assemble(context: PluginContext) -> list[Middleware]:
    """The middleware list, outermost first."""
    builtins = [load_builtin(name, context) for name in BUILTIN_ORDER]
    users = [load_user_plugin(spec, context) for spec in context.config.plugins]
    ordered = builtins[:USER_PLUGINS_AT] + users + builtins[USER_PLUGINS_AT:]
    return [middleware for middleware in ordered if middleware is not None]


def build_chain(middlewares: list[Middleware], endpoint: Handler) -> Handler:
    """Compose once: each middleware receives the rest of the chain as `call_next`."""
    handler = endpoint
    for middleware in reversed(middlewares):
        handler = _bind(middleware, handler)
    return handler


class _Bound:
    """One middleware with the rest of the chain bound as its `call_next`.

    `__call__` is a plain function handing back the middleware's coroutine: an async
    wrapper would add one coroutine per layer per request for nothing.
    """

    __slots__ = ("middleware", "call_next")  # public: tests walk them to pin the order

    def __init__(self, middleware: Middleware, call_next: Handler):
        self.middleware, self.call_next = middleware, call_next

    def __call__(self, request: ProxyRequest) -> Awaitable[ProxyResponse]:
        return self.middleware(request, self.call_next)


def _bind(middleware: Middleware, call_next: Handler) -> Handler:
    return _Bound(middleware, call_next)


async def start_all(middlewares: list[Middleware]) -> None:
    for middleware in middlewares:
        startup = getattr(middleware, "startup", None)
        if startup is not None:
            await startup()


async def stop_all(middlewares: list[Middleware]) -> None:
    for middleware in reversed(middlewares):
        shutdown = getattr(middleware, "shutdown", None)
        if shutdown is not None:
            await shutdown()
