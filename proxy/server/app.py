"""The aiohttp application: the only place that touches web.Request / StreamResponse.

A request becomes a ProxyRequest here (auth, size limit, JSON, validation,
routing), runs through the current Runtime's chain, and its ProxyResponse is
written back: a body, or SSE events as they arrive. Once a stream has begun
an error can only be one `data: {"error": ...}` event, then the end.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy import inbound
from proxy.config.formats import FORMATS
from proxy.config.model import Config
from proxy.core.errors import AuthenticationFailed, NotFound, ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse, Target
from proxy.core.services import Services
from proxy.inbound import validation
from proxy.inbound.messages.catalog import anthropic_model_list
from proxy.inbound.responses import stored
from proxy.observability.logs import record_refusal
from proxy.server import answer, incoming
from proxy.server.guard import GuardedRunner
from proxy.server.runtime import Runtime
from proxy.server.services import create_services
from proxy.server.status import fallback_snapshot, render_status_page
from proxy.state.store import create_store

log = logging.getLogger("byok.server")

STATIC_DIR = Path(__file__).parent / "static"


class ProxyApp:
    """The current Runtime plus the long-lived services; builds the web application."""

    def __init__(self, config: Config, services: Services | None = None):
        self.services = services or create_services(config)
        self.runtime = Runtime(config, self.services)
        self._retiring: set[asyncio.Task] = set()  # old generations closing; referenced so they are not collected

    @property
    def config(self) -> Config:
        return self.runtime.config

    async def start(self) -> None:
        await self.runtime.start()
        if self.services.health is not None:
            self.services.health.start()  # returns at once; the first checks run in the background

    async def close(self) -> None:
        if self.services.health is not None:
            await self.services.health.stop()
        if self.services.catalog is not None:
            await self.services.catalog.close()
        await self.runtime.close()
        if self.services.limiters is not None:
            await self.services.limiters.close()  # hands back Redis leases still being released
        if self.services.responses_store is not None:
            await self.services.responses_store.close()

    async def swap(self, config: Config) -> Runtime:
        """Install a new config generation; the old one is closed once its requests finish."""
        new_runtime = Runtime(config, self.services)
        await new_runtime.start()
        old_runtime, self.runtime = self.runtime, new_runtime
        if self.services.catalog is not None:
            self.services.catalog.apply_config(config)
        if self.services.health is not None:
            self.services.health.apply_config(config)
        store = self.services.responses_store
        if store is not None and store.settings != config.responses.store:
            self.services.responses_store = create_store(config.responses.store)
            self._retire(store.close())
        self._retire(_close_when_idle(old_runtime))
        return new_runtime

    def _retire(self, closing: Any) -> None:
        task = asyncio.get_running_loop().create_task(closing)
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def build(self) -> web.Application:
        app = web.Application(middlewares=[answer.envelope_errors], client_max_size=self.config.limits.max_body_bytes,
                              handler_args={"max_field_size": self.config.limits.max_header_bytes,
                                            "max_line_size": self.config.limits.max_header_bytes})
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/", self.status_page)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/upstreams", self.upstreams)
        app.router.add_get("/v1/responses/{id}", self.stored_response)
        app.router.add_delete("/v1/responses/{id}", self.stored_response)
        app.router.add_get("/v1/responses/{id}/input_items", self.stored_input_items)
        app.router.add_route("*", "/v1/{path:.*}", self.proxy)
        app.on_startup.append(lambda _: self.start())
        app.on_cleanup.append(lambda _: self.close())
        return app

    # ---- small endpoints ------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return answer.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.services.draining:
            return answer.json_response({"status": "draining"}, status=503)
        return answer.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        if self.config.auth.protect_metrics:
            self._authenticate(request)
        if self.services.metrics is None:
            return answer.error_response(NotFound("metrics are not enabled in this build"), "")
        body, content_type = self.services.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def status_page(self, request: web.Request) -> web.StreamResponse:
        if self.config.auth.protect_metrics:
            self._authenticate(request)
        page = STATIC_DIR / "status.html"
        if not page.exists():
            return answer.json_response({"service": "byok-proxy", "endpoints": ["/v1/chat/completions", "/v1/models",
                                                                  "/v1/upstreams", "/healthz", "/readyz", "/metrics"]})
        try:  # the rows are what GET /v1/upstreams shows, so only to whom it would show them
            self._authenticate(request)
        except AuthenticationFailed:
            snapshot = None
        else:
            snapshot = self._health_snapshot()
        body = render_status_page(page.read_text(encoding="utf-8"), snapshot, self.config)
        return web.Response(text=body, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def models(self, request: web.Request) -> web.Response:
        anthropic = "anthropic-version" in request.headers  # an Anthropic SDK: its own shape and envelope
        try:
            self._authenticate(request)
        except ProxyError as exc:
            return answer.error_response(exc, "", inbound.api_for("messages") if anthropic else None)
        payload = self.services.catalog.models_payload()
        return answer.json_response(anthropic_model_list(payload) if anthropic else payload)

    async def stored_response(self, request: web.Request) -> web.Response:
        """`GET` and `DELETE /v1/responses/{id}`, served from the responses store."""
        response_id = request.match_info["id"]
        if not stored.is_proxy_id(response_id):
            return await self.proxy(request)  # an upstream's id: its own store answers
        try:
            self._authenticate(request)
            store = self.services.responses_store
            record = await stored.load(store, response_id)
            if request.method == "DELETE":
                await store.delete(response_id)
                return answer.json_response(stored.deleted(response_id))
            return answer.json_response(record.response)
        except ProxyError as exc:
            return answer.error_response(exc, "")

    async def stored_input_items(self, request: web.Request) -> web.Response:
        """`GET /v1/responses/{id}/input_items`, paged as OpenAI pages it."""
        if not stored.is_proxy_id(request.match_info["id"]):
            return await self.proxy(request)
        try:
            self._authenticate(request)
            record = await stored.load(self.services.responses_store, request.match_info["id"])
            return answer.json_response(stored.input_items_page(record.input_items, request.query))
        except ProxyError as exc:
            return answer.error_response(exc, "")

    async def upstreams(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        return answer.json_response(self._health_snapshot())

    def _health_snapshot(self) -> dict[str, Any]:
        """GET /v1/upstreams, and the status page's table: every upstream unknown without a monitor."""
        if self.services.health is not None:
            return self.services.health.snapshot()
        return fallback_snapshot(self.config)

    # ---- the proxy --------------------------------------------------------------------------------

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        runtime = self.runtime  # one generation for the whole request, even across a reload
        drain = self.services.drain
        task = drain.enter() if drain is not None else None
        runtime.inflight.enter()  # held until the answer, stream included, is written
        try:
            return await self._serve(request, runtime)
        finally:
            runtime.inflight.leave()
            if drain is not None:
                drain.leave(task)

    async def _serve(self, request: web.Request, runtime: Runtime) -> web.StreamResponse:
        request_id = incoming.request_id(request)
        received, proxy_request, response = time.monotonic(), None, None
        path = _v1_path(request).strip("/")
        api = inbound.api_for(path) if request.method == "POST" else None
        try:
            proxy_request, context = await self._proxy_request(request, request_id, runtime, received, path, api)
            routed = api.route(proxy_request, context) if hasattr(api, "route") else proxy_request
            if isinstance(routed, ProxyResponse):  # answered by the proxy itself
                response = routed
            else:
                proxy_request = routed
                response = await runtime.handler(proxy_request)
            if api is not None:
                response = await api.render(response, context, proxy_request)
        except ProxyError as exc:
            if proxy_request is None:  # refused before the chain, so plugins.observe never saw it
                record_refusal(self.services, request.method, _v1_path(request), request_id, exc, received,
                               api=api.name if api is not None else "other")
            return answer.error_response(exc, request_id, api)
        except Exception:  # a bug must become an envelope, never a traceback on the wire
            log.exception("internal error handling request %s", request_id)
            return answer.error_response(ProxyError(f"internal error in byok-proxy (request id {request_id})",
                                              code="internal_error"), request_id, api)
        finally:
            if proxy_request is not None and not (response is not None and response.is_stream):
                proxy_request.trace.finish()
        headers = {**response.headers, **answer.trace_headers(proxy_request, response), "x-request-id": request_id}
        if response.is_stream:
            try:
                return await answer.write_stream(request, response, headers)
            finally:
                proxy_request.trace.finish()
        return web.Response(status=response.status, body=response.body, headers=headers,
                            content_type=answer.bare_type(response.content_type))

    async def _proxy_request(self, request: web.Request, request_id: str, runtime: Runtime,
                             started: float, path: str, api: inbound.InboundAPI | None) -> tuple[ProxyRequest, Any]:
        config = runtime.config
        self._authenticate(request)
        raw = await incoming.read_body(request, config.limits)
        incoming.check_path(path)
        parsed = await self._parsed(request, raw, path, api, config)
        model = validation.check_model_field(parsed.body) if parsed.body is not None else None
        stored_upstream = api is None and path.startswith("responses/")  # an id an upstream made (not the proxy's)
        targets = runtime.router.stored_at("responses") if stored_upstream else runtime.router.resolve(model)
        if parsed.spliced is not None and not _all_speak(api.name, targets):  # one would read it all
            parsed = await api.parse(raw, config.limits, self.services, whole=True)
        body = parsed.body
        stream_options = body.get("stream_options") if body else None
        timeout = config.limits.request_timeout
        proxy_request = ProxyRequest(
            request_id=request_id, method=request.method, path=path, query=request.query_string,
            client_headers={name.lower(): value for name, value in request.headers.items()},
            api=api.name if api is not None else "other", native_body=_native_body(api, parsed, raw),
            body=body, spliced=parsed.spliced, raw_body=raw if body is None else b"",
            content_type=request.content_type, client_model=model, targets=targets, target=targets[0],
            stream=body is not None and body.get("stream") is True,
            client_wants_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
            started_at=started, deadline=started + timeout if timeout else None)
        if parsed.native_only is not None:
            proxy_request = _narrowed_to_native(proxy_request, parsed.native_only)
        return proxy_request, parsed.context

    async def _parsed(self, request: web.Request, raw: bytes, path: str, api: inbound.InboundAPI | None,
                      config: Config) -> inbound.Parsed:
        """The body as its inbound API reads it; a user plugin may read any field, so with one
        configured it is read whole. Another JSON body is only decoded and checked."""
        if api is not None:
            return await api.parse(raw, config.limits, self.services, whole=bool(config.plugins))
        if raw and incoming.is_json(request.content_type, path):
            return inbound.Parsed(validation.parse_json_object(raw, config.limits), None)
        return inbound.Parsed(None, None)

    def _authenticate(self, request: web.Request) -> None:
        keys = self.config.auth.api_keys
        if not keys:
            return
        presented = incoming.presented_key(request)
        if presented is None:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key'")
        # Digests of equal length, compared against every key: timing reveals neither which key
        # is close nor how long the keys are. surrogateescape: a header with invalid UTF-8 is a
        # wrong key (401), not a crash.
        offered = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(offered, hashlib.sha256(key.reveal().encode()).digest())
        if not matched:
            raise AuthenticationFailed("invalid API key for this proxy")


def _all_speak(api: str, targets: tuple[Target, ...]) -> bool:
    """Whether every target speaks the client's API `api` natively, so a body read only at its top
    level serves each: it is sent the client's bytes with the owned fields spliced in, and nothing
    on its way reads the members left unread (a translating or in-process upstream would)."""
    return all(FORMATS[target.upstream.format].native_api == api for target in targets)


def _native_body(api: inbound.InboundAPI | None, parsed: inbound.Parsed, raw: bytes) -> bytes:
    """What an upstream speaking the client's API is sent (beyond chat, whose path is the pivot's):
    the client's bytes, unless the API rewrote them (a stored conversation replayed)."""
    if api is None or api.name == "chat":
        return b""
    return parsed.native if parsed.native is not None else raw


async def _close_when_idle(runtime: Runtime) -> None:
    # Its streams may run as long as their upstream's timeout.total allows; closing the
    # transport under them would cut them, so wait that long (plus the grace) at most.
    config = runtime.config
    grace = config.shutdown_grace + max((u.timeout.total for u in config.upstreams.values()), default=0.0)
    await runtime.inflight.wait_idle(grace)
    await runtime.close()


def _narrowed_to_native(request: ProxyRequest, refusal: ProxyError) -> ProxyRequest:
    """A request only an upstream speaking the client's API can serve (hosted tools for Responses,
    documents or server tools for Messages) goes only to the native targets leading its alias;
    with none, it is refused with the error its API gave (`refusal`)."""
    native = request.leading_native_targets()
    if not native:
        raise refusal
    return request.replace(targets=native, target=native[0])


def _v1_path(request: web.Request) -> str:
    """The path below /v1/, whichever route matched."""
    return request.match_info.get("path", request.path[len("/v1/"):])


async def start_site(proxy_app: ProxyApp, host: str, port: int,
                     reuse_port: bool = False) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the bound port (useful with port 0).

    handler_cancellation: a client that disconnects cancels its handler, which
    closes the upstream request and frees its slot at once.
    """
    limits = proxy_app.config.limits
    runner = GuardedRunner(proxy_app.build(), limits=lambda: proxy_app.config.limits, handler_cancellation=True,
                           access_log=None, shutdown_timeout=proxy_app.config.shutdown_grace)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=min(limits.max_connections, 4096), reuse_address=True,
                       reuse_port=reuse_port)  # reuse_port: --workers (proxy/server/workers.py)
    await site.start()
    bound_port = runner.addresses[0][1] if runner.addresses else port
    return runner, bound_port
