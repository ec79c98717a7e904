"""Secrets at rest: the Secret type, enc: values, master keys, and the keygen/encrypt/validate commands."""
from __future__ import annotations

import pickle
import textwrap

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.model import ConfigError, parse_config
from proxy.config.secrets import REDACTED, Keyring, Secret, SecretError, quote, redact, redact_value
from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(120)

PROVIDER_KEY = "sk-provider-secret-0123456789abcdef"


def enc(value: str, key: str) -> str:
    return Keyring([key]).encrypt(value)


def config_with_key(api_key_value: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        upstreams:
          openai:
            base_url: https://api.openai.com/v1
            api_key: {api_key_value}
        {extra}""")


# ---- the Secret type --------------------------------------------------------------------------

def test_secret_never_prints_its_value():
    secret = Secret(PROVIDER_KEY)
    rendered = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret, format(secret, ">40"),
                repr({"key": secret}), repr([secret]), repr((secret,))]
    for text in rendered:
        assert PROVIDER_KEY not in text
    assert secret.reveal() == PROVIDER_KEY


def test_secret_refuses_pickling():
    with pytest.raises(TypeError):
        pickle.dumps(Secret(PROVIDER_KEY))


def test_redact_scrubs_every_registered_secret_from_text_and_json():
    Secret(PROVIDER_KEY)
    text = f"upstream said: invalid key {PROVIDER_KEY} (Bearer {PROVIDER_KEY})"
    assert PROVIDER_KEY not in redact(text)
    assert redact(text).count(REDACTED) == 2
    nested = {"error": {"message": f"bad {PROVIDER_KEY}", "details": [PROVIDER_KEY, 3, None]}}
    assert PROVIDER_KEY not in repr(redact_value(nested))


def test_overlapping_secrets_are_redacted_completely():
    short, long = "sk-overlap-abc", "sk-overlap-abc-and-more-characters"
    Secret(short), Secret(long)
    assert redact(f"x {long} y {short} z") == f"x {REDACTED} y {REDACTED} z"


CUT_KEY = "sk-cut-Xq7Lm2Rt9Vb4Nz6Pw1Kd8Hs3Jf5"


@pytest.mark.parametrize("piece", [CUT_KEY[:9], CUT_KEY[:20], CUT_KEY[:-1], CUT_KEY[-9:], CUT_KEY[-25:], CUT_KEY[1:]])
def test_a_cut_prefix_or_suffix_of_a_secret_longer_than_8_characters_is_redacted(piece):
    Secret(CUT_KEY)
    assert redact(f"quoted: {piece}...") == f"quoted: {REDACTED}..."


def test_pieces_of_8_characters_or_fewer_are_left_alone_as_ordinary_text():
    Secret(CUT_KEY)
    assert redact(f"a {CUT_KEY[:8]} b {CUT_KEY[-8:]} c") == f"a {CUT_KEY[:8]} b {CUT_KEY[-8:]} c"


def test_quote_redacts_before_it_cuts_so_the_cut_leaves_no_piece_of_a_key():
    Secret(CUT_KEY)
    text = "x" * 290 + CUT_KEY + " was refused"
    quoted = quote(text, 300)
    assert quoted == "x" * 290 + REDACTED + " was re..."
    assert CUT_KEY[:9] not in quote("x" * 291 + CUT_KEY, 300)


def test_values_from_the_environment_are_redacted_only_whole_in_config_messages():
    from proxy.config.secrets import _config_values, redact_config
    _config_values.add("https://gateway.example.com/v1")
    assert redact_config("base_url https://gateway.example.com/v1 is bad") == f"base_url {REDACTED} is bad"
    assert redact_config("see https://gateway.example.org") == "see https://gateway.example.org"


# ---- keyring -----------------------------------------------------------------------------------

def test_keyring_round_trip_and_rotation_order():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token_old = enc(PROVIDER_KEY, old)[len("enc:"):]
    both = Keyring.from_sources(f"{new},{old}", None)
    assert both.decrypt(token_old) == PROVIDER_KEY
    # encrypting uses the newest (first) key: the old key alone cannot open it
    token_new = both.encrypt(PROVIDER_KEY)[len("enc:"):]
    assert Keyring([new]).decrypt(token_new) == PROVIDER_KEY
    with pytest.raises(SecretError):
        Keyring([old]).decrypt(token_new)


def test_keys_may_be_separated_by_commas_spaces_or_newlines():
    keys = [Fernet.generate_key().decode() for _ in range(3)]
    keyring = Keyring.from_sources(f" {keys[0]} ,\n{keys[1]}\t{keys[2]}\n", None)
    assert keyring.keys == keys


@pytest.mark.parametrize("keys, expected", [
    ([], "needs a master key"),
    (["not-a-fernet-key"], "malformed"),
    ([Fernet.generate_key().decode()], "wrong master key"),
])
def test_keyring_failures_are_secret_errors_without_values(keys, expected):
    token = enc(PROVIDER_KEY, Fernet.generate_key().decode())[len("enc:"):]
    with pytest.raises(SecretError) as caught:
        Keyring(keys).decrypt(token)
    assert expected in str(caught.value)
    assert PROVIDER_KEY not in str(caught.value)
    for key in keys:
        assert key not in str(caught.value)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_decrypting_garbage_only_ever_raises_secret_error(token):
    keyring = Keyring([Fernet.generate_key().decode()])
    with pytest.raises(SecretError):
        keyring.decrypt(token)


# ---- config loading ------------------------------------------------------------------------------

def test_enc_value_with_the_right_key_loads():
    key = Fernet.generate_key().decode()
    config = parse_config(config_with_key(enc(PROVIDER_KEY, key)), environ={"BYOK_MASTER_KEY": key})
    assert config.upstreams["openai"].api_key.reveal() == PROVIDER_KEY
    assert PROVIDER_KEY not in repr(config)


def test_master_key_file_like_a_mounted_kubernetes_secret(tmp_path):
    key = Fernet.generate_key().decode()
    key_file = tmp_path / "master.key"
    key_file.write_text(key + "\n")
    text = config_with_key(enc(PROVIDER_KEY, key), f"secrets: {{master_key_file: {key_file}}}\n")
    config = parse_config(text, environ={})
    assert config.upstreams["openai"].api_key.reveal() == PROVIDER_KEY


@pytest.mark.parametrize("environ, fragment", [
    ({}, "set BYOK_MASTER_KEY or secrets.master_key_file"),
    ({"BYOK_MASTER_KEY": Fernet.generate_key().decode()}, "wrong master key"),
    ({"BYOK_MASTER_KEY": "definitely-not-a-key"}, "malformed"),
])
def test_wrong_or_missing_master_key_is_a_config_error_naming_the_field(environ, fragment):
    token = enc(PROVIDER_KEY, Fernet.generate_key().decode())
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with_key(token), environ=environ)
    [problem] = caught.value.problems
    assert problem.path == "upstreams.openai.api_key"
    assert problem.line == 4
    assert fragment in problem.message
    assert PROVIDER_KEY not in str(caught.value)


def test_unreadable_master_key_file_names_the_setting(tmp_path):
    text = config_with_key("plain-key", f"secrets: {{master_key_file: {tmp_path / 'missing.key'}}}\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert any(problem.path == "secrets.master_key_file" for problem in caught.value.problems)


def test_binary_master_key_file_is_a_config_error(tmp_path):
    key_file = tmp_path / "master.key"
    key_file.write_bytes(b"\xff\xfe\x00binary")
    text = config_with_key("plain-key", f"secrets: {{master_key_file: {key_file}}}\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert "not text" in str(caught.value)


def test_missing_environment_variable_names_it():
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with_key("${BYOK_TEST_UNSET_VARIABLE}"), environ={})
    [problem] = caught.value.problems
    assert problem.path == "upstreams.openai.api_key"
    assert "BYOK_TEST_UNSET_VARIABLE" in problem.message


# ---- the commands ---------------------------------------------------------------------------------

def test_validate_reports_a_wrong_master_key_without_a_traceback(tmp_path):
    token = enc(PROVIDER_KEY, Fernet.generate_key().decode())
    path = tmp_path / "config.yaml"
    path.write_text(config_with_key(token))
    result = run_cli("validate", "-c", str(path), env={"BYOK_MASTER_KEY": Fernet.generate_key().decode()})
    assert result.returncode == 1
    assert "upstreams.openai.api_key (line 4): cannot decrypt enc: value" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert PROVIDER_KEY not in result.stdout + result.stderr


def test_serve_refuses_a_config_it_cannot_decrypt_without_a_traceback(tmp_path):
    token = enc(PROVIDER_KEY, Fernet.generate_key().decode())
    path = tmp_path / "config.yaml"
    path.write_text(config_with_key(token))
    result = run_cli("serve", "-c", str(path), "--port", "0", env={"BYOK_MASTER_KEY": ""})
    assert result.returncode == 2
    assert "upstreams.openai.api_key (line 4)" in result.stderr
    assert "BYOK_MASTER_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_keygen_prints_only_a_fresh_key():
    first, second = run_cli("keygen"), run_cli("keygen")
    assert first.returncode == 0 and first.stderr == ""
    lines = first.stdout.splitlines()
    assert len(lines) == 1 and first.stdout == lines[0] + "\n"
    Fernet(lines[0].encode())  # a usable key, not just any text
    assert first.stdout != second.stdout


def test_encrypt_reads_stdin_strips_one_newline_and_prints_only_the_token():
    key = Fernet.generate_key().decode()
    for given_text, expected in [(PROVIDER_KEY + "\n", PROVIDER_KEY), (PROVIDER_KEY + "\r\n", PROVIDER_KEY),
                                 (PROVIDER_KEY, PROVIDER_KEY), (PROVIDER_KEY + "\n\n", PROVIDER_KEY + "\n"),
                                 (" spaced key ", " spaced key ")]:
        result = run_cli("encrypt", stdin=given_text, env={"BYOK_MASTER_KEY": key})
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert result.stdout.startswith("enc:") and result.stdout.count("\n") == 1
        assert PROVIDER_KEY not in result.stdout
        assert Keyring([key]).decrypt(result.stdout.strip()[len("enc:"):]) == expected


def test_encrypt_never_takes_the_secret_from_argv():
    result = run_cli("encrypt", PROVIDER_KEY, stdin="", env={"BYOK_MASTER_KEY": Fernet.generate_key().decode()})
    assert result.returncode != 0
    assert "enc:" not in result.stdout


@pytest.mark.parametrize("stdin, env, fragment", [
    ("", {"BYOK_MASTER_KEY": Fernet.generate_key().decode()}, "stdin was empty"),
    ("\n", {"BYOK_MASTER_KEY": Fernet.generate_key().decode()}, "stdin was empty"),
    (PROVIDER_KEY, {"BYOK_MASTER_KEY": ""}, "needs a master key"),
    (PROVIDER_KEY, {"BYOK_MASTER_KEY": "short"}, "malformed"),
])
def test_encrypt_failures_are_one_line_messages(stdin, env, fragment):
    result = run_cli("encrypt", stdin=stdin, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert PROVIDER_KEY not in result.stderr


def test_encrypt_with_a_key_file(tmp_path):
    key = Fernet.generate_key().decode()
    key_file = tmp_path / "k"
    key_file.write_text(key)
    result = run_cli("encrypt", "--key-file", str(key_file), stdin=PROVIDER_KEY, env={"BYOK_MASTER_KEY": ""})
    assert result.returncode == 0
    assert Keyring([key]).decrypt(result.stdout.strip()[4:]) == PROVIDER_KEY


def test_encrypted_value_from_the_command_loads_in_a_config():
    key = Fernet.generate_key().decode()
    token = run_cli("encrypt", stdin=PROVIDER_KEY + "\n", env={"BYOK_MASTER_KEY": key}).stdout.strip()
    config = parse_config(config_with_key(token), environ={"BYOK_MASTER_KEY": key})
    assert config.upstreams["openai"].api_key.reveal() == PROVIDER_KEY
