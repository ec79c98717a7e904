"""The logging setup: JSON lines, text on a terminal, levels, redaction.

The access line written by the running server is pinned end to end in
test_logs_server.py.
"""
from __future__ import annotations

import io
import json
import logging

import pytest

from proxy.config import LoggingConfig
from proxy.logs import ACCESS_LOGGER, RequestLog, log_request, setup_logging
from proxy.secrets import Secret

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
    logging.getLogger("proxy.transport").error("upstream said: bad key %s", key)
    log_request(entry(error=f"echoed {key}"))
    text = out.getvalue()
    assert key not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["msg"] == "upstream said: bad key ***"
    assert lines[1]["error"] == "echoed ***"


def test_level_is_configurable():
    out = io.StringIO()
    setup_logging(LoggingConfig(format="json", level="error"), out)
    logging.getLogger("proxy.reload").warning("not shown")
    logging.getLogger("proxy.reload").error("shown")
    assert [json.loads(line)["msg"] for line in out.getvalue().splitlines()] == ["shown"]


def test_request_lines_can_be_turned_off():
    out = io.StringIO()
    setup_logging(LoggingConfig(format="json", requests=False), out)
    log_request(entry())
    logging.getLogger("proxy.reload").info("still logged")
    assert [json.loads(line)["msg"] for line in out.getvalue().splitlines()] == ["still logged"]
