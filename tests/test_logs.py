"""The logging setup: JSON lines, text on a terminal, levels, redaction.

The access line written by the running server is pinned end to end in
test_logs_server.py.
"""
from __future__ import annotations

import io
import json
import logging

import pytest

from proxy.config.model import LoggingConfig
from proxy.config.secrets import Secret
from proxy.observability.logs import ACCESS_LOGGER, JSONFormatter, RequestLog, log_request, setup_logging

pytestmark = pytest.mark.timeout(30)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger(ACCESS_LOGGER).disabled = False


def entry(**overrides) -> RequestLog:
    values = dict(request_id="req-1", method="POST", path="chat/completions", status=200, duration_ms=812.345,
                  model="main", upstreams=("fast/small", "slow/big"), served_by="slow", stream=True,
                  ttft_ms=120.5, tokens_in=12, tokens_out=34, fallback_reason="429")
    values.update(overrides)
    return RequestLog(**values)


class Captured(logging.Handler):
    """A handler a user or plugin might add next to ours: it sees the records as made."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_access_line_is_one_json_object_with_the_request_fields():
    out = io.StringIO()
    setup_logging(LoggingConfig(format="json"), out)
    log_request(entry())
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["level"] == "info" and line["logger"] == ACCESS_LOGGER
    assert line["request_id"] == "req-1"
    assert line["model"] == "main"
    assert line["upstreams"] == ["fast/small", "slow/big"]
    assert line["status"] == 200
    assert line["duration_ms"] == 812.35
    assert line["ttft_ms"] == 120.5
    assert (line["tokens_in"], line["tokens_out"]) == (12, 34)
    assert line["fallback_reason"] == "429"
    assert line["ts"].endswith("Z")


def test_server_errors_are_logged_as_warnings():
    out = io.StringIO()
    setup_logging(LoggingConfig(format="json", level="warning"), out)
    log_request(entry(status=200))
    log_request(entry(status=502, error="upstream 'slow': refused"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["level"], line["status"]) for line in lines] == [("warning", 502)]
    assert lines[0]["error"] == "upstream 'slow': refused"


def test_auto_format_is_text_on_a_terminal_and_json_otherwise():
    terminal, pipe = Terminal(), io.StringIO()
    setup_logging(LoggingConfig(format="auto"), terminal)
    log_request(entry())
    setup_logging(LoggingConfig(format="auto"), pipe)
    log_request(entry())
    human = terminal.getvalue()
    assert not human.startswith("{")
    assert "fast/small -> slow/big" in human and "200" in human and "ttft=120ms" in human
    assert json.loads(pipe.getvalue())["request_id"] == "req-1"


def test_reconfiguring_replaces_the_handler_instead_of_adding_one():
    first, second = io.StringIO(), io.StringIO()
    setup_logging(LoggingConfig(format="json"), first)
    setup_logging(LoggingConfig(format="json"), second)
    log_request(entry())
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_secrets_are_redacted_from_every_line():
    key = Secret("sk-live-abcdef123456").reveal()
    out = io.StringIO()
    setup_logging(LoggingConfig(format="json", level="debug"), out)
    logging.getLogger("proxy.upstream.transport").error("upstream said: bad key %s", key)
    log_request(entry(error=f"echoed {key}"))
    text = out.getvalue()
    assert key not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["msg"] == "upstream said: bad key ***"
    assert lines[1]["error"] == "echoed ***"


def test_level_is_configurable():
    out = io.StringIO()
    setup_logging(LoggingConfig(format="json", level="error"), out)
    logging.getLogger("proxy.server.reload").warning("not shown")
    logging.getLogger("proxy.server.reload").error("shown")
    assert [json.loads(line)["msg"] for line in out.getvalue().splitlines()] == ["shown"]


def test_request_lines_can_be_turned_off():
    out = io.StringIO()
    setup_logging(LoggingConfig(format="json", requests=False), out)
    log_request(entry())
    logging.getLogger("proxy.server.reload").info("still logged")
    assert [json.loads(line)["msg"] for line in out.getvalue().splitlines()] == ["still logged"]


def test_another_handler_sees_the_access_record_as_our_line_writes_it():
    out, seen = io.StringIO(), Captured()
    setup_logging(LoggingConfig(format="json"), out)
    logging.getLogger().addHandler(seen)
    log_request(entry())
    line = json.loads(out.getvalue())
    (record,) = seen.records
    assert type(record.msg) is str and record.args is None
    assert record.getMessage() == line["msg"] == \
        "POST /v1/chat/completions main via fast/small -> slow/big 200 812ms ttft=120ms tokens=12/34 fallback=429"
    assert record.byok_fields == {name: line[name] for name in record.byok_fields}


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("name", ["error", "model", "path", "upstreams", "request_id", "method", "served_by",
                                  "fallback_reason", "status"])
def test_a_secret_in_any_access_field_is_redacted_in_the_line_and_in_the_record(name, log_format):
    """An upstream may echo a key into its error; a client may send one as a model name or a
    request id. The access line usually has no secret, and skips redacting twice only then."""
    key = Secret("sk-live-echoed-0123456789").reveal()
    out, seen = io.StringIO(), Captured()
    setup_logging(LoggingConfig(format=log_format), out)
    logging.getLogger().addHandler(seen)
    log_request(entry(**{name: (f"fast/{key}",) if name == "upstreams" else f"said {key}"}))
    (record,) = seen.records
    assert key not in out.getvalue() and out.getvalue()
    assert key not in record.getMessage() and key not in repr(record.byok_fields)
    redacted = ["fast/***"] if name == "upstreams" else "said ***"
    assert record.byok_fields[name] == redacted
    if log_format == "json":
        assert json.loads(out.getvalue())[name] == redacted


def test_timestamps_are_utc_to_the_millisecond_whatever_order_records_come_in():
    formatter = JSONFormatter()
    stamps = {1700000000.999: "2023-11-14T22:13:20.999Z", 1700000001.0: "2023-11-14T22:13:21.000Z",
              1700000000.5: "2023-11-14T22:13:20.500Z", 1700086400.25: "2023-11-15T22:13:20.250Z"}
    for created, expected in stamps.items():
        record = logging.LogRecord("proxy.test", logging.INFO, __file__, 1, "m", None, None)
        record.created = created
        assert json.loads(formatter.format(record))["ts"] == expected
