"""Logging: one structured line per request, JSON for machines, text for people.

`setup_logging(config.logging)` installs a single handler on the root
logger, so the proxy's modules, plugins and libraries all write through it.
Format `auto` writes JSON unless the stream is a terminal. Every line, whatever its origin, passes `proxy.config.secrets.redact` on its way out,
so a key that slipped into a message or an upstream's echoed error is printed
as `***`.

The access line (`log_request`) carries fixed field names a log pipeline can
rely on: request_id, model, upstreams (tried, in order), status, duration_ms,
ttft_ms, tokens_in, tokens_out, fallback_reason. plugins/observe.py writes it
when a response or its stream ends; `record_refusal` covers requests the
server refused before the middleware chain (bad key, unknown model).
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Mapping

from proxy.config.secrets import contains_secret, redact, redact_value
from proxy.core import jsonutil

ACCESS_LOGGER = "byok.access"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Attribute under which structured fields travel on a LogRecord.
FIELDS_ATTRIBUTE = "byok_fields"

_handler_marker = "_byok_handler"


@dataclass(slots=True)
class RequestLog:
    """What the access line says about one finished request.

    Not frozen, though nothing changes one once made: one is built per request, and a frozen
    dataclass's __init__ (an object.__setattr__ per field) cost 1 µs more. Not a named tuple
    either: its fields are read some forty times per line, and a tuple's are slower to read.
    """

    request_id: str
    method: str
    path: str
    status: int | str
    duration_ms: float
    model: str | None = None
    upstreams: tuple[str, ...] = ()   # "upstream/model" per attempt, in the order tried
    served_by: str | None = None
    stream: bool = False
    ttft_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    fallback_reason: str | None = None  # the first reason the request moved on, if it did
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def finished(cls, request: Any, status: int, error: Any, now: float) -> "RequestLog":
        """The line for a request that ended, read from its trace (proxy.core.exchange.RequestTrace)."""
        trace = request.trace
        attempts = trace.attempts
        moved_on = [attempt.reason for attempt in attempts[:-1] if attempt.reason]
        first_token = trace.first_token_at if request.stream else None
        return cls(request_id=request.request_id, method=request.method, path=request.path, status=status,
                   duration_ms=(now - request.started_at) * 1000, model=request.client_model,
                   upstreams=tuple(f"{attempt.upstream}/{attempt.model}" for attempt in attempts),
                   served_by=trace.served_by, stream=request.stream,
                   ttft_ms=None if first_token is None else (first_token - request.started_at) * 1000,
                   tokens_in=trace.prompt_tokens, tokens_out=trace.completion_tokens,
                   fallback_reason=moved_on[0] if moved_on else None,
                   error=error.message if error is not None else None)

    def fields(self) -> dict[str, Any]:
        values = {
            "request_id": self.request_id, "method": self.method, "path": self.path, "model": self.model,
            "upstreams": list(self.upstreams), "served_by": self.served_by, "status": self.status,
            "stream": self.stream, "duration_ms": round(self.duration_ms, 2),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "fallback_reason": self.fallback_reason,
        }
        if self.error is not None:
            values["error"] = self.error
        values.update(self.extra)
        return values

    def summary(self) -> str:
        tried = " -> ".join(self.upstreams) or "-"
        text = f"{self.method} /v1/{self.path} {self.model or '-'} via {tried} {self.status} {self.duration_ms:.0f}ms"
        if self.ttft_ms is not None:
            text += f" ttft={self.ttft_ms:.0f}ms"
        if self.tokens_in is not None or self.tokens_out is not None:
            text += f" tokens={self.tokens_in or 0}/{self.tokens_out or 0}"
        if self.fallback_reason:
            text += f" fallback={self.fallback_reason}"
        if self.error:
            text += f" error={self.error}"
        return text


# Looked up once: logging.getLogger takes the logging module's lock on every call.
_access_logger = logging.getLogger(ACCESS_LOGGER)


def log_request(entry: RequestLog, logger: logging.Logger | None = None) -> None:
    """Write the access line for one request (level info; warning for 5xx)."""
    target = logger or _access_logger
    level = logging.WARNING if _is_server_error(entry.status) else logging.INFO
    if target.isEnabledFor(level):
        message, fields = _redacted(entry)
        # Built directly: Logger.log would walk the stack for a caller this line does not need.
        record = target.makeRecord(target.name, level, __file__, 0, message, None, None,
                                   extra={FIELDS_ATTRIBUTE: fields})
        target.handle(record)


def _is_server_error(status: int | str) -> bool:
    return isinstance(status, int) and status >= 500


class _ProvenClean(str):
    """An access line's text that `_redacted` scanned and found free of secrets: the record
    factory hands it on as a plain str without scanning it a second time."""

    __slots__ = ()


def _redacted(entry: RequestLog) -> tuple[str, dict[str, Any]]:
    """The line's text and fields with every secret redacted.

    Redacted here, not only by our formatter: any handler a user adds sees the record as is,
    and `error` may quote an upstream that echoed the key back. Usually there is nothing to
    redact, and one scan of all the line's strings joined proves it (a secret in any one of
    them is in the joined text); only otherwise are the text and each field redacted one by
    one, exactly as they would have been.
    """
    summary, fields = entry.summary(), entry.fields()
    texts = _joined_texts(entry, summary)
    if texts is not None and not contains_secret(texts):
        return _ProvenClean(summary), fields
    return redact(summary), redact_value(fields)


_NOT_TEXT = (int, float, type(None))  # bool is an int


def _joined_texts(entry: RequestLog, summary: str) -> str | None:
    """The text and every string `entry.fields()` holds, joined for one scan. None, leaving it to
    redact_value's walk, when the entry carries extra fields or a field is not of its declared type
    (a non-string value where text belongs could hide strings in it)."""
    status = entry.status
    if entry.extra or not (isinstance(status, (int, str)) and isinstance(entry.stream, _NOT_TEXT)
                           and isinstance(entry.tokens_in, _NOT_TEXT) and isinstance(entry.tokens_out, _NOT_TEXT)
                           and isinstance(entry.duration_ms, _NOT_TEXT) and isinstance(entry.ttft_ms, _NOT_TEXT)):
        return None
    try:  # a falsy value holds no string; a truthy non-string makes join raise
        return "\n".join((summary, entry.request_id, entry.method, entry.path, entry.model or "",
                          entry.served_by or "", entry.fallback_reason or "", entry.error or "",
                          status if isinstance(status, str) else "", *entry.upstreams))
    except TypeError:
        return None


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(jsonutil.dumps_str(line))


class TextFormatter(logging.Formatter):
    """For a human at a terminal: time, level, message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _iso_time(created: float) -> str:
    return f"{_utc_seconds(created)}.{int(created % 1 * 1000):03d}Z"


class _UTCSeconds:
    """`created` to the second as `YYYY-MM-DDTHH:MM:SS`, formatted once per second: gmtime and
    strftime were the costliest part of a JSON line, and a busy proxy writes many a second."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)  # gmtime's floor too, for any time after 1970
        last = self._last  # one read: another thread may replace it, never half of it
        if last[0] != second:
            last = self._last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return last[1]


_utc_seconds = _UTCSeconds()


def choose_format(requested: str, stream: IO[str]) -> str:
    if requested != "auto":
        return requested
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def setup_logging(settings: Any, stream: IO[str] | None = None) -> logging.Handler:
    """Install (or replace, on reload) the proxy's log handler.

    `settings` is a LoggingConfig (level, format, requests). Calling it again
    swaps the handler in place, so a reload can change level or format.
    """
    output = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(output)
    handler.setFormatter(JSONFormatter() if choose_format(settings.format, output) == "json" else TextFormatter())
    setattr(handler, _handler_marker, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _handler_marker, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[settings.level])
    install_record_redaction()
    # Our access line replaces aiohttp's; its warnings and errors still come through.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    access = logging.getLogger(ACCESS_LOGGER)
    access.disabled = not settings.requests
    return handler


def install_record_redaction() -> None:
    """Redact every log record as it is made, whoever logs it: any handler (one a plugin adds, a
    test's capture) then sees `***`, not only ours. The message is rendered once, its args
    dropped; a traceback is rendered and redacted into `exc_text`, which formatters reuse."""
    base = logging.getLogRecordFactory()
    if getattr(base, _handler_marker, False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        if type(record.msg) is _ProvenClean:  # an access line, found free of secrets as it was made
            record.msg = str(record.msg)  # a plain str, like every other record's
            return record
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: leave it to the handler to report
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        return record

    setattr(make, _handler_marker, True)
    logging.setLogRecordFactory(make)


_TRACEBACKS = logging.Formatter()


def record_refusal(services: Any, method: str, path: str, request_id: str, error: Any,
                   started_at: float, client_model: str | None = None, api: str = "other") -> None:
    """A request the server refused before the chain (auth, size, validation, unknown model):
    counted and logged like any other, with no upstream."""
    now = time.monotonic()  # the caller's clock started when the request arrived
    metrics = getattr(services, "metrics", None)
    if metrics is not None:
        metrics.observe_request(upstream=None, model=None, status=error.status, duration=now - started_at,
                                api=api)
    log_request(RequestLog(request_id=request_id, method=method, path=path, status=error.status,
                           duration_ms=(now - started_at) * 1000, model=client_model, error=error.message))
