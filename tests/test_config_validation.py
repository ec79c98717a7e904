"""`byok-proxy validate` names every problem with its YAML path and line; `serve` refuses the same configs."""
import re

import pytest

from tests.helpers import free_port, run_cli

BROKEN = """\
listen: {host: 127.0.0.1, port: 8080}
upstreams:
  typo:
    base_url: https://api.example.com/v1
    api_kye: abc
  public_http:
    base_url: http://api.example.com/v1
  responses:
    base_url: https://api.openai.com/v1/responses
  missing_env:
    base_url: https://api.example.com
    api_key: ${BYOK_TEST_SURELY_UNSET_VAR}
  not_a_url:
    base_url: ftp//nowhere
  bad_types:
    base_url: https://api.example.com
    max_concurrent_requests: many
    streaming: sometimes
models:
  main:
    targets: [nowhere/model-x]
"""

EXPECTED = [
    ("upstreams.typo.api_kye", 5, "unknown key 'api_kye'; did you mean 'api_key'"),
    ("upstreams.public_http.base_url", 7, "http:// is only allowed for loopback"),
    ("upstreams.responses.base_url", 9, "Responses API"),
    ("upstreams.missing_env.api_key", 12, "BYOK_TEST_SURELY_UNSET_VAR is not set"),
    ("upstreams.not_a_url.base_url", 14, "not an http(s) URL"),
    ("upstreams.bad_types.max_concurrent_requests", 17, "whole number"),
    ("upstreams.bad_types.streaming", 18, "true or false"),
    ("models.main.targets[0]", 21, "no upstream named 'nowhere'"),
]


@pytest.fixture
def broken_config(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    return path


def test_validate_reports_every_problem_with_path_and_line(broken_config):
    result = run_cli("validate", "-c", str(broken_config))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    for path, line, words in EXPECTED:
        matching = [text for text in lines if text.startswith(f"{path} (line {line}): ")]
        assert matching, f"no line for {path} at line {line} in:\n{result.stdout}"
        assert words in matching[0]
    assert len(lines) == len(EXPECTED)
    assert all(re.match(r"^\S+ \(line \d+\): .+", text) for text in lines)


def test_serve_refuses_to_start_on_the_same_problems(broken_config):
    result = run_cli("serve", "-c", str(broken_config), "--port", str(free_port()), timeout=30)
    assert result.returncode != 0
    assert "upstreams.typo.api_kye (line 5)" in result.stderr
    assert "BYOK_TEST_SURELY_UNSET_VAR" in result.stderr


def test_yaml_syntax_error_points_at_line(tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text("upstreams:\n  a: {base_url: x\n  b: 1\n")
    result = run_cli("validate", "-c", str(path))
    assert result.returncode == 1 and "YAML syntax error" in result.stdout and "(line " in result.stdout


def test_valid_config_passes(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("upstreams:\n  groq:\n    base_url: https://api.groq.com/openai\n    api_key: ${KEY_FOR_TEST}\n")
    result = run_cli("validate", "-c", str(path), env={"KEY_FOR_TEST": "gsk-123456"})
    assert result.returncode == 0, result.stdout
    assert "OK" in result.stdout and "gsk-123456" not in result.stdout


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = run_cli("validate", "-c", str(tmp_path / "absent.yaml"))
    assert result.returncode == 1 and "cannot read config" in result.stdout


def test_example_config_is_valid():
    result = run_cli("validate", "-c", "config.example.yaml")
    assert result.returncode == 0, result.stdout


def test_thinking_budget_below_the_minimum_is_a_config_error(tmp_path):
    path = tmp_path / "budget.yaml"
    path.write_text("upstreams:\n  demo: {format: mock}\nreasoning:\n  budgets:\n    low: 512\n")
    result = run_cli("validate", "-c", str(path))
    assert result.returncode == 1
    assert result.stdout.startswith("reasoning.budgets.low (line 5): a thinking budget must be at least 1024")


def test_headers_that_would_split_the_request_are_config_errors(tmp_path, monkeypatch):
    # A key read from a file often keeps its trailing newline; sent as is it would end the
    # header early. Refused at load, naming the field, never quoting the value.
    monkeypatch.setenv("BYOK_TEST_KEY_WITH_NEWLINE", "sk-line-break-secret\n")
    path = tmp_path / "headers.yaml"
    path.write_text("upstreams:\n"
                    "  a:\n"
                    "    base_url: https://api.example.com/v1\n"
                    "    api_key: ${BYOK_TEST_KEY_WITH_NEWLINE}\n"
                    "    headers: {\"bad name\": x, X-Ok: \"one\\r\\nInjected: two\"}\n")
    result = run_cli("validate", "-c", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("upstreams.a.api_key (line 4): the value contains a line break") for line in lines)
    assert any(line.startswith("upstreams.a.headers.bad name (line 5): 'bad name' is not a valid") for line in lines)
    assert any(line.startswith("upstreams.a.headers.X-Ok (line 5): the value contains a line break") for line in lines)
    assert "sk-line-break-secret" not in result.stdout and "Injected" not in result.stdout
