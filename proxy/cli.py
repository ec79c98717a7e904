"""byok-proxy serve | validate | check | keygen | encrypt."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import os
import signal
import sys
from typing import TYPE_CHECKING, AsyncIterator, Sequence

from proxy.config.model import Config, ConfigError, load_config
from proxy.config.secrets import Keyring, SecretError, generate_key
from proxy.config.urls import is_loopback_bind

if TYPE_CHECKING:
    from proxy.catalog.check import UpstreamReport
    from proxy.core.chain import Handler

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def default_config_path() -> str:
    return os.environ.get("BYOK_CONFIG") or "config.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="byok-proxy", description="One OpenAI-compatible endpoint for every LLM provider.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("-c", "--config", default=None, help="config file (default: $BYOK_CONFIG, else ./config.yaml)")
    serve.add_argument("--host", default=None, help="listen address (overrides listen.host)")
    serve.add_argument("--port", type=int, default=None, help="listen port (overrides listen.port)")
    serve.add_argument("--workers", type=int, default=1,
                       help="serving processes sharing the port through SO_REUSEPORT (default 1)")
    serve.add_argument("--allow-unauthenticated", action="store_true",
                       help="allow a non-loopback address without auth.api_keys")

    validate = commands.add_parser("validate", help="load and check a config")
    validate.add_argument("-c", "--config", default=None)

    check = commands.add_parser("check", help="probe each upstream: catalog fetch and a 1-token request")
    check.add_argument("-c", "--config", default=None)
    check.add_argument("--upstream", default=None, help="only this upstream")
    check.add_argument("--json", action="store_true", help="machine-readable output")

    commands.add_parser("keygen", help="print a new master key for enc: secrets")

    encrypt = commands.add_parser("encrypt", help="encrypt a secret read from stdin; prints enc:<token>")
    encrypt.add_argument("--key-file", default=None, help="master key file (default: $BYOK_MASTER_KEY)")

    rotate = commands.add_parser("rotate", help="re-encrypt the config's enc: values under the newest master key")
    rotate.add_argument("-c", "--config", default=None)
    rotate.add_argument("-o", "--output", default=None,
                        help="write the result here ('-' for stdout) instead of replacing the config file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"serve": cmd_serve, "validate": cmd_validate, "check": cmd_check,
               "keygen": cmd_keygen, "encrypt": cmd_encrypt, "rotate": cmd_rotate}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_OK


def _load(path: str | None) -> Config | None:
    try:
        return load_config(path or default_config_path())
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem))
        return EXIT_FAILED
    print(f"{path}: OK ({len(config.upstreams)} upstreams, {len(config.models)} aliases)")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from proxy.catalog import check
    from proxy.core.chain import PluginLoadError
    try:
        return check.run(args, probe_chain)
    except PluginLoadError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG


@contextlib.asynccontextmanager
async def probe_chain(config: Config) -> AsyncIterator[Handler]:
    """The chain `serve` runs for `config` (every middleware, then the transport), for `check`'s
    probes: configured headers, reasoning and `options:` apply to them as to any request. Only
    the access log is left out: check prints its own report."""
    from proxy.server.runtime import Runtime
    from proxy.server.services import create_services
    config = dataclasses.replace(config, logging=dataclasses.replace(config.logging, requests=False))
    services = create_services(config)
    runtime = Runtime(config, services)
    await runtime.start()
    try:
        yield runtime.handler
    finally:
        await runtime.close()
        await services.catalog.close()
        await services.limiters.close()


async def check_upstreams(config: Config, names: list[str]) -> list[UpstreamReport]:
    """`check` of the named upstreams in this process, through the chain built for `config`."""
    from proxy.catalog import check
    async with probe_chain(config) as send:
        return await check.check_upstreams(config, names, send)


def cmd_keygen(args: argparse.Namespace) -> int:
    print(generate_key())
    return EXIT_OK


def cmd_encrypt(args: argparse.Namespace) -> int:
    try:
        keyring = Keyring.from_sources(os.environ.get("BYOK_MASTER_KEY"), args.key_file)
        keyring.check()
        plaintext = _read_secret()
        print(keyring.encrypt(plaintext))
    except SecretError as exc:
        print(f"byok-proxy encrypt: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _read_secret() -> str:
    """The secret from stdin (never argv, which other users can see in `ps`): one trailing newline dropped."""
    if sys.stdin is None:
        raise SecretError("pipe the secret on stdin")
    if sys.stdin.isatty():
        import getpass
        return getpass.getpass("secret (not echoed): ")
    try:
        plaintext = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError("the secret on stdin is not UTF-8 text") from None
    if plaintext.endswith("\n"):
        plaintext = plaintext[:-1]
        if plaintext.endswith("\r"):
            plaintext = plaintext[:-1]
    if not plaintext:
        raise SecretError("stdin was empty: pipe the secret in, e.g. `printf %s \"$KEY\" | byok-proxy encrypt`")
    return plaintext


def cmd_rotate(args: argparse.Namespace) -> int:
    from proxy.config import rotate
    path = args.config or default_config_path()
    try:
        text = rotate.read_config_text(path)
        result = rotate.rotate_text(text, rotate.keyring_for(text, os.environ))
        if args.output == "-":
            sys.stdout.write(result.text)
        else:
            rotate.write_atomically(args.output or path, result.text, mode_of=path)
    except rotate.RotationError as exc:
        print(f"byok-proxy rotate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"byok-proxy rotate: cannot write {exc.filename or args.output or path}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"{path}: re-encrypted {len(result.rotated)} enc: value(s) under the newest key; "
          f"{len(result.current)} already current", file=sys.stderr)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    host = args.host or config.listen.host
    port = args.port if args.port is not None else config.listen.port
    if not is_loopback_bind(host) and not config.auth.api_keys and not args.allow_unauthenticated:
        print(f"refusing to listen on {host} without auth.api_keys: anyone who can reach it could spend your keys. "
              f"Add auth.api_keys, bind 127.0.0.1, or pass --allow-unauthenticated.", file=sys.stderr)
        return EXIT_CONFIG
    if args.workers > 1:  # proxy/server/workers.py forks N processes that share the port
        from proxy.server import workers
        return workers.run(config, host, port, args.workers, lambda bound: _serve_process(config, host, bound, True))
    return _serve_process(config, host, port, False)


def _serve_process(config: Config, host: str, port: int, reuse_port: bool) -> int:
    from proxy.server.heap import keep_freed_memory
    keep_freed_memory()
    _install_fast_loop()
    return asyncio.run(_serve(config, host, port, reuse_port))


def _install_fast_loop() -> None:
    if os.environ.get("BYOK_NO_UVLOOP"):
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(config: Config, host: str, port: int, reuse_port: bool = False) -> int:
    from proxy.core.chain import PluginLoadError
    from proxy.server.app import ProxyApp, start_site
    from proxy.server.lifecycle import drain
    from proxy.server.reload import Reloader
    from proxy.server.services import create_services
    services = create_services(config)
    _setup_observability(config, services)
    try:
        proxy_app = ProxyApp(config, services)
    except PluginLoadError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    try:
        runner, bound_port = await start_site(proxy_app, host, port, reuse_port=reuse_port)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    print(f"byok-proxy listening on http://{host}:{bound_port} ({len(config.upstreams)} upstreams)",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _begin_drain, services, stop)
    reloader = Reloader(proxy_app)
    reloader.start()  # SIGHUP and config file changes
    _freeze_startup_heap()
    await stop.wait()
    await reloader.stop()
    await drain(runner, proxy_app)  # stop listening, in-flight requests finish within shutdown_grace, exit 0
    return EXIT_OK


def _freeze_startup_heap() -> None:
    """Move everything made at startup (modules, aiohttp, config, ~40,000 objects) out of the
    garbage collector's view: it lives as long as the process, and a full collection that
    walks it pauses every request for about 10 ms (measured), which would land in p99."""
    gc.collect()
    gc.freeze()


def _begin_drain(services, stop: asyncio.Event) -> None:
    services.draining = True
    stop.set()


def _setup_observability(config: Config, services) -> None:
    try:
        from proxy.observability.logs import setup_logging
    except ImportError:
        return
    setup_logging(config.logging)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
