"""`byok-proxy rotate`: enc: values re-encrypted under the newest key, the rest of the file untouched."""
from __future__ import annotations

import os
import re
import stat

import pytest
from cryptography.fernet import Fernet

from proxy.config.model import parse_config
from proxy.config.rotate import RotationError, rotate_text
from proxy.config.secrets import Keyring
from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(120)

SECRETS = {"openai": "sk-openai-rotate-0001", "anthropic": "sk-ant-rotate-0002", "header": "hdr-rotate-0003",
           "inbound": "proxy-key-rotate-0004"}
TOKEN = re.compile(r"enc:[A-Za-z0-9_\-=]+")


def new_key() -> str:
    return Fernet.generate_key().decode()


def config_text(key: str, newline: str = "\n") -> str:
    def e(name: str) -> str:
        return Keyring([key]).encrypt(SECRETS[name])
    lines = [
        "# byok-proxy config: hand-written, comments and all",
        "listen: {host: 127.0.0.1, port: 8080}   # flow style stays flow style",
        "auth:",
        f"  api_keys: ['{e('inbound')}', plain-inbound-key]",
        "upstreams:",
        "  openai:",
        "    base_url: https://api.openai.com/v1",
        f"    api_key: {e('openai')}       # plain scalar, trailing comment",
        "  anthropic:",
        "    base_url: https://api.anthropic.com",
        f'    api_key: "{e("anthropic")}"',
        f"    headers: &shared {{x-team-token: {e('header')}}}",
        "  other:",
        "    base_url: https://api.groq.com/openai/v1",
        "    api_key: ${GROQ_API_KEY}   # enc:not-a-value-in-a-comment",
        "    headers: *shared",
        "",
    ]
    return newline.join(lines)


def masked(text: str) -> str:
    return TOKEN.sub("enc:TOKEN", text)


def loaded_secrets(text: str, key_env: str) -> dict[str, str]:
    config = parse_config(text, environ={"BYOK_MASTER_KEY": key_env, "GROQ_API_KEY": "gsk-plain"})
    upstreams = config.upstreams
    return {"openai": upstreams["openai"].api_key.reveal(), "anthropic": upstreams["anthropic"].api_key.reveal(),
            "header": upstreams["anthropic"].headers["x-team-token"].reveal(),
            "inbound": config.auth.api_keys[0].reveal()}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_rotation_changes_only_the_tokens(newline):
    old, new = new_key(), new_key()
    original = config_text(old, newline)
    result = rotate_text(original, Keyring([new, old]))
    assert len(result.rotated) == 4 and result.current == []
    assert masked(result.text) == masked(original)  # comments, quoting, order, line endings: identical
    assert TOKEN.findall(result.text) != TOKEN.findall(original)
    assert loaded_secrets(result.text, new) == SECRETS  # the newest key alone now opens everything


def test_rotation_is_idempotent():
    old, new = new_key(), new_key()
    once = rotate_text(config_text(old), Keyring([new, old]))
    twice = rotate_text(once.text, Keyring([new, old]))
    assert twice.text == once.text
    assert twice.rotated == [] and len(twice.current) == 4


def test_a_value_no_key_opens_stops_the_rotation_and_names_its_line():
    stranger = new_key()
    text = config_text(stranger)
    with pytest.raises(RotationError) as caught:
        rotate_text(text, Keyring([new_key()]))
    assert "line 4" in str(caught.value) and "line 8" in str(caught.value)
    assert all(secret not in str(caught.value) for secret in SECRETS.values())


def test_no_key_at_all_is_refused():
    with pytest.raises(RotationError):
        rotate_text(config_text(new_key()), Keyring([]))


def test_rotate_command_rewrites_the_file_in_place_keeping_its_mode(tmp_path):
    old, new = new_key(), new_key()
    path = tmp_path / "config.yaml"
    path.write_text(config_text(old))
    os.chmod(path, 0o640)
    result = run_cli("rotate", "-c", str(path), env={"BYOK_MASTER_KEY": f"{new}, {old}", "GROQ_API_KEY": "x"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "re-encrypted 4" in result.stderr
    rewritten = path.read_text()
    assert masked(rewritten) == masked(config_text(old))
    assert loaded_secrets(rewritten, new) == SECRETS
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [name for name in os.listdir(tmp_path)] == ["config.yaml"]  # no temporary file left behind
    combined = result.stdout + result.stderr
    assert all(secret not in combined for secret in SECRETS.values())


def test_rotate_command_to_stdout_leaves_the_file_alone(tmp_path):
    old, new = new_key(), new_key()
    path = tmp_path / "config.yaml"
    original = config_text(old)
    path.write_text(original)
    result = run_cli("rotate", "-c", str(path), "-o", "-", env={"BYOK_MASTER_KEY": f"{new}\n{old}"})
    assert result.returncode == 0
    assert path.read_text() == original
    assert loaded_secrets(result.stdout, new) == SECRETS


def test_rotate_command_uses_the_configs_key_file(tmp_path):
    old, new = new_key(), new_key()
    key_file = tmp_path / "master.key"
    key_file.write_text(f"{new}\n{old}\n")
    path = tmp_path / "config.yaml"
    path.write_text(config_text(old) + f"secrets: {{master_key_file: {key_file}}}\n")
    result = run_cli("rotate", "-c", str(path), env={"BYOK_MASTER_KEY": ""})
    assert result.returncode == 0, result.stderr
    key_file.write_text(new)  # step 5 of the rotation: drop the old key
    assert loaded_secrets(path.read_text(), "") == SECRETS


def test_rotate_command_with_the_wrong_keys_changes_nothing(tmp_path):
    path = tmp_path / "config.yaml"
    original = config_text(new_key())
    path.write_text(original)
    result = run_cli("rotate", "-c", str(path), env={"BYOK_MASTER_KEY": new_key()})
    assert result.returncode == 1
    assert "cannot decrypt" in result.stderr and "Traceback" not in result.stderr
    assert path.read_text() == original
