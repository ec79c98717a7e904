"""One config generation: router, transport and the middleware chain built from it.

A reload builds a new Runtime and swaps it in; requests already running keep
the one they started with, and the old one is closed once they are done.
"""
from __future__ import annotations

from proxy.config.model import Config
from proxy.core.chain import PluginContext, assemble, build_chain, start_all, stop_all
from proxy.core.inflight import InFlight
from proxy.core.routing import Router
from proxy.core.services import Services
from proxy.upstream.transport import Transport


class Runtime:
    def __init__(self, config: Config, services: Services):
        self.config = config
        self.services = services
        discovered = services.catalog.discovered if services.catalog is not None else None
        self.router = Router(config, discovered)
        self.transport = Transport(config)
        self.middlewares = assemble(PluginContext(config, services))
        self.handler = build_chain(self.middlewares, self.transport)
        self.inflight = InFlight()  # requests and streams on this generation (a reload waits for it)

    async def start(self) -> None:
        await self.transport.start()
        await start_all(self.middlewares)

    async def close(self) -> None:
        await stop_all(self.middlewares)
        await self.transport.close()
