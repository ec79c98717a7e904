"""Hot reload: on SIGHUP, and when the config file changes.

A reload loads and validates the whole new config first; only a config that
loads and whose middleware chain builds is swapped in (ProxyApp.swap), in one
assignment, so each request runs entirely on the generation it started with
and requests in flight finish on the old one. Anything wrong keeps the old
config running: the problems are logged with their YAML path and line, and
`byok_config_reloads_total{result="failure"}` counts it.

File changes are found by polling, once a second, the config path *through its
symlinks* (and the master key file, when the config names one). A Kubernetes
ConfigMap volume updates by swapping its directory's `..data` symlink, never
by writing the file in place: the resolved file then has a new inode, which
this sees. Reloads fire only when the content really changed, and after the
file has stopped changing for a moment, so an editor's two-step save is read
once, whole.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from typing import Any

from proxy.config.model import Config, ConfigError, load_config

log = logging.getLogger("byok.reload")
POLL_SECONDS = 1.0
SETTLE_SECONDS = 0.2  # a change must hold this long before it is read (two-step saves)

Fingerprint = tuple[tuple[str, int, int, int, int], ...]


class Reloader:
    def __init__(self, proxy_app: Any, *, poll_seconds: float = POLL_SECONDS):
        self.proxy_app = proxy_app
        self.poll_seconds = poll_seconds
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._digest = _digest(self._watched(proxy_app.config))  # the content running now
        self._rejected: str | None = None  # the content last refused, not retried until it changes
        self._listen = proxy_app.config.listen  # bound at startup; a reload cannot move it

    @property
    def path(self) -> str:
        return self.proxy_app.config.source

    # ---- starting and stopping ------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._watcher = loop.create_task(self._watch(), name="config-watch")

    async def stop(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        tasks = [self._watcher, *self._tasks] if self._watcher is not None else list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- reloading ------------------------------------------------------------------------------

    async def reload(self, cause: str) -> bool:
        """Load, validate and swap in the config at `self.path`; False keeps the old one."""
        async with self._lock:
            path = self.path
            attempted = _digest(self._watched(self.proxy_app.config))
            loop = asyncio.get_running_loop()
            try:
                # file IO and decryption stay off the event loop
                config: Config = await loop.run_in_executor(None, load_config, path)
            except ConfigError as exc:
                return self._failed(cause, path, attempted, [str(problem) for problem in exc.problems])
            try:
                await self.proxy_app.swap(config)
            except Exception as exc:  # a plugin that fails to build: the old chain keeps serving
                return self._failed(cause, path, attempted, [f"{type(exc).__name__}: {exc}"])
            self._digest = _digest(self._watched(config))
            self._adopted(config, cause, path)
            return True

    def _failed(self, cause: str, path: str, attempted: str | None, problems: list[str]) -> bool:
        self._rejected = attempted
        log.error("config reload (%s) of %s failed; the previous config keeps running:\n  %s",
                  cause, path, "\n  ".join(problems))
        metrics = self.proxy_app.services.metrics
        if metrics is not None:
            metrics.observe_reload(False)
        return False

    def _adopted(self, config: Config, cause: str, path: str) -> None:
        from proxy.observability.logs import setup_logging
        services = self.proxy_app.services
        if services.metrics is not None:
            services.metrics.configure(config)
            services.metrics.observe_reload(True)
        setup_logging(config.logging)
        log.info("config reloaded (%s) from %s: %d upstreams, %d aliases", cause, path,
                 len(config.upstreams), len(config.models))
        if config.listen != self._listen:
            log.warning("listen address changes take effect only after a restart")

    # ---- watching the files ---------------------------------------------------------------------

    def _watched(self, config: Config) -> list[str]:
        paths = [config.source] if config.source else []
        if config.secrets.master_key_file:
            paths.append(config.secrets.master_key_file)
        return paths

    async def _watch(self) -> None:
        seen = _fingerprint(self._watched(self.proxy_app.config))
        while True:
            await asyncio.sleep(self.poll_seconds)
            current = _fingerprint(self._watched(self.proxy_app.config))
            if current == seen:
                continue
            current = await self._settled(current)
            seen = current
            content = _digest(self._watched(self.proxy_app.config)) if current else None
            if content is not None and content not in (self._digest, self._rejected):
                await self.reload("file change")

    async def _settled(self, fingerprint: Fingerprint) -> Fingerprint:
        while True:
            await asyncio.sleep(SETTLE_SECONDS)
            again = _fingerprint(self._watched(self.proxy_app.config))
            if again == fingerprint:
                return again
            fingerprint = again


def _fingerprint(paths: list[str]) -> Fingerprint:
    """Identity and version of each file as reached through its symlinks; () while one is missing."""
    found = []
    for path in paths:
        try:
            stat = os.stat(path)  # follows symlinks: a ConfigMap's ..data swap changes st_ino
        except OSError:
            return ()
        found.append((os.path.realpath(path), stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def _digest(paths: list[str]) -> str | None:
    digest = hashlib.sha256()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                digest.update(handle.read())
        except OSError:
            return None
        digest.update(b"\0")
    return digest.hexdigest()
