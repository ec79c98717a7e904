"""An upstream's own TLS settings (`tls: {ca_file, client_cert, client_key, server_name, verify}`),
read and checked at load into the ssl.SSLContext its connections use.

Files are read here, once: a missing file, a file that holds no certificate, or a key that
does not belong to its certificate is a config problem naming the path, not a failure on the
first request. A key's contents are never quoted (only its path). An upstream without `tls:`
settings uses the shared context of the system store (proxy/upstream/pool.py).
"""
from __future__ import annotations

import logging
import ssl
from typing import Any, Optional

from proxy.config.urls import is_private_host

log = logging.getLogger("byok.config")


class _EncryptedKey(Exception):
    """Raised from OpenSSL's password callback: a config load never prompts for a password."""


def _no_password() -> bytes:
    raise _EncryptedKey()


def client_context(settings: Any, host: str, path: str) -> tuple[Optional[ssl.SSLContext], list[tuple[str, str]]]:
    """The context for an upstream at `host` with these TLSSettings (None: the shared system
    one), and the problems found as (field path, message)."""
    problems: list[tuple[str, str]] = []
    if not settings.verify and not is_private_host(host):
        problems.append((f"{path}.verify", f"verify: false is only allowed for loopback and private addresses, "
                                           f"not {host}; trust its CA with ca_file instead"))
    if settings.client_key and not settings.client_cert:
        problems.append((f"{path}.client_key", "client_key needs client_cert (the certificate it belongs to)"))
    if settings.server_name is not None and (not settings.server_name or any(c in settings.server_name for c in " /:")):
        problems.append((f"{path}.server_name", "must be a host name (the one the certificate names)"))
    if problems:
        return None, problems
    if settings.verify and not (settings.ca_file or settings.client_cert):
        return None, []
    context = _trusting(settings, path, problems)
    if context is not None and settings.client_cert:
        _load_client_certificate(context, settings, path, problems)
    if problems:
        return None, problems
    if not settings.verify:
        log.warning("%s.verify is false: the certificate of %s is not checked (allowed for private addresses only)",
                    path, host)
    return context, []


def _trusting(settings: Any, path: str, problems: list[tuple[str, str]]) -> Optional[ssl.SSLContext]:
    """A client context trusting `ca_file` only, the system store without one, or nothing
    (verify: false)."""
    if not settings.verify:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    if not settings.ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except ssl.SSLError:  # an OSError too: before it
        problems.append((f"{path}.ca_file", f"{settings.ca_file} holds no PEM certificate"))
    except FileNotFoundError:
        problems.append((f"{path}.ca_file", f"cannot read {settings.ca_file}: no such file"))
    except OSError as exc:
        problems.append((f"{path}.ca_file", f"cannot read {settings.ca_file}: {exc.strerror or 'unreadable'}"))
    return None


def _load_client_certificate(context: ssl.SSLContext, settings: Any, path: str,
                             problems: list[tuple[str, str]]) -> None:
    cert, key = settings.client_cert, settings.client_key
    for field, file in (("client_cert", cert), ("client_key", key)):
        if file and not _readable(file):
            problems.append((f"{path}.{field}", f"cannot read {file}"))
    if problems:
        return
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKey:
        problems.append((f"{path}.client_key", f"{key or cert} holds an encrypted key; give it unencrypted "
                                               f"(file permissions protect it)"))
    except ssl.SSLError as exc:
        problems.append((f"{path}.client_key", _chain_problem(exc, cert, key)))
    except OSError as exc:
        problems.append((f"{path}.client_cert", f"cannot read {cert}: {exc.strerror or 'unreadable'}"))


def _chain_problem(exc: ssl.SSLError, cert: str, key: Optional[str]) -> str:
    """What OpenSSL found wrong with the pair, in words, never with either file's contents."""
    reason = (getattr(exc, "reason", None) or "").upper()
    if "MISMATCH" in reason:
        return f"the key in {key or cert} does not belong to the certificate in {cert}"
    if key is None:
        return f"{cert} must hold the client certificate and its key (or set client_key)"
    return f"cannot load the client certificate {cert} with the key {key} ({getattr(exc, 'reason', None) or 'not PEM'})"


def _readable(file: str) -> bool:
    try:
        with open(file, "rb"):
            return True
    except OSError:
        return False
