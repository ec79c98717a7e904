"""Secret values: `${ENV}` and `enc:<token>` resolution, and a type that never prints itself.

Every resolved secret is remembered in a process-wide registry so that
`redact()` can scrub it from any text on its way out (logs, error bodies that
an upstream echoed back). The registry only grows with config loads, which are
rare, and holds the values the process already holds anyway.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any, Iterable

REDACTED = "***"
ENC_PREFIX = "enc:"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SecretError(ValueError):
    """A secret could not be resolved; the message names what is missing, never a value."""


class Secret:
    """A string that is redacted in repr/str/format; `.reveal()` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        _registry.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # pickling would write the value somewhere
        raise TypeError("Secret values cannot be pickled")


class _Registry:
    """Known secret strings, longest first so overlapping secrets redact fully.

    With `partial`, a cut piece of a secret is redacted too: any prefix or suffix of it longer
    than PARTIAL_MIN - 1 characters, as left where a quote was shortened (an upstream's error
    text cut at 300 characters, a status line at 40) whether we cut it or the upstream did.
    Any such piece holds the secret's first or last PARTIAL_MIN characters, so one scan for
    those finds them all (`_anchors`), and most text, holding none, costs that scan only.
    Where one is found, prefixes are replaced by one pattern over the text; suffixes are
    prefixes of the reversed secret in the reversed text, so both patterns start with a
    literal the regex engine scans for quickly, instead of trying every suffix everywhere.
    """

    MIN_LENGTH = 6   # shorter strings would redact ordinary words
    PARTIAL_MIN = 9  # a cut piece this long or longer is redacted (about 50 bits of a random key)

    def __init__(self, partial: bool = False) -> None:
        self._values: set[str] = set()
        self._partial = partial
        self._pattern: re.Pattern[str] | None = None
        self._reversed: re.Pattern[str] | None = None  # suffixes, over the reversed text
        self._anchors: re.Pattern[str] | None = None   # what every secret or cut piece holds
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) < self.MIN_LENGTH or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = self._compile(ordered)
            if self._partial:
                self._reversed = self._compile([value[::-1] for value in ordered])
                ends = {end for value in ordered for end in (value[:self.PARTIAL_MIN], value[-self.PARTIAL_MIN:])}
                self._anchors = re.compile("|".join(re.escape(end) for end in sorted(ends, key=len, reverse=True)))
            else:
                self._anchors = self._pattern

    def _compile(self, values: list[str]) -> re.Pattern[str]:
        if not self._partial:
            return re.compile("|".join(re.escape(value) for value in values))
        # One group per secret, its prefixes longest first: the group's shared first PARTIAL_MIN
        # characters are factored out by the regex compiler, so the rest is tried only after them.
        return re.compile("|".join(
            "(?:" + "|".join(re.escape(value[:end]) for end in range(len(value), self.PARTIAL_MIN - 1, -1)) + ")"
            if len(value) > self.PARTIAL_MIN else re.escape(value) for value in values))

    def redact(self, text: str) -> str:
        if not text or not self.found_in(text):
            return text
        text = self._pattern.sub(REDACTED, text)
        backwards = self._reversed
        if backwards is None:
            return text
        return backwards.sub(REDACTED, text[::-1])[::-1]  # REDACTED reads the same both ways

    def found_in(self, text: str) -> bool:
        anchors = self._anchors
        return anchors is not None and anchors.search(text) is not None


_registry = _Registry(partial=True)
# Values a config took from the environment, in any field. Whether they are secrets is not
# known (a base URL may embed a token), so they are scrubbed from messages about the config
# only (validation problems, plugin load failures), never from the rest of the logs.
_config_values = _Registry()


def redact(text: str) -> str:
    """`text` with every known secret, and every cut prefix or suffix of one longer than 8
    characters, replaced by ***. Redact before shortening a quote: see `quote`."""
    return _registry.redact(text)


def quote(text: str, limit: int) -> str:
    """`text` redacted, then cut to `limit` characters: the cut never leaves part of a key."""
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + "..."


def contains_secret(text: str) -> bool:
    """Whether `redact(text)` would change anything. One scan and no new string: a caller with
    many short strings can join them, scan once, and redact one by one only when this is true."""
    return _registry.found_in(text)


def redact_config(text: str) -> str:
    """For messages about a config: secrets and every value substituted from `${ENV}` become ***."""
    return _config_values.redact(_registry.redact(text))


def redact_value(value: Any) -> Any:
    """Redact secrets inside a JSON-like structure (strings in dicts and lists)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    return value


def remember(value: str) -> None:
    """Register a value that must never be printed although it is not wrapped in Secret."""
    _registry.add(value)


def substitute_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace every `${NAME}`; a missing variable raises SecretError naming it."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise SecretError(f"environment variable {name} is not set")
        _config_values.add(env[name])
        return env[name]

    return _ENV_REFERENCE.sub(lookup, text)


def has_env_reference(text: str) -> bool:
    return bool(_ENV_REFERENCE.search(text))


class Keyring:
    """The master keys that can open `enc:` values, newest first (rotation keeps old ones readable)."""

    def __init__(self, keys: Iterable[str]):
        self.keys = [key.strip() for key in keys if key.strip()]

    @classmethod
    def from_sources(cls, env_value: str | None, key_file: str | None) -> "Keyring":
        keys: list[str] = []
        if env_value:
            keys.extend(_split_keys(env_value))
        if key_file:
            try:
                with open(key_file, encoding="utf-8") as handle:
                    keys.extend(_split_keys(handle.read()))
            except OSError as exc:
                raise SecretError(f"cannot read master key file {key_file}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise SecretError(f"master key file {key_file} is not text (expected keys from "
                                  f"`byok-proxy keygen`, one per line)") from None
        for key in keys:
            remember(key)
        return cls(keys)

    def _fernet(self):
        from cryptography.fernet import Fernet, MultiFernet
        if not self.keys:
            raise SecretError("an enc: value needs a master key: set BYOK_MASTER_KEY or secrets.master_key_file")
        try:
            return MultiFernet([Fernet(key.encode()) for key in self.keys])
        except (ValueError, TypeError):
            raise SecretError("the master key is malformed (expected the output of `byok-proxy keygen`)") from None

    def check(self) -> None:
        """Raise SecretError unless there is at least one key and every key is well-formed."""
        self._fernet()

    def decrypt(self, token: str) -> str:
        from cryptography.fernet import InvalidToken
        fernet = self._fernet()
        try:
            return fernet.decrypt(token.strip().encode("utf-8", "replace")).decode("utf-8")
        except InvalidToken:
            raise SecretError("cannot decrypt enc: value: wrong master key or damaged token") from None
        except UnicodeError:
            raise SecretError("the enc: value decrypts to bytes that are not UTF-8 text") from None

    def encrypt(self, plaintext: str) -> str:
        return ENC_PREFIX + self._fernet().encrypt(plaintext.encode()).decode()

    def rotate(self, token: str) -> str:
        """Re-encrypt an `enc:` token under the newest key."""
        return ENC_PREFIX + self._fernet().rotate(token.encode()).decode()


def _split_keys(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", text) if part]


def generate_key() -> str:
    from cryptography.fernet import Fernet
    return Fernet.generate_key().decode()


def resolve(text: str, keyring: Keyring, environ: dict[str, str] | None = None) -> str:
    """Resolve one config string: `enc:` tokens are decrypted, `${ENV}` references substituted."""
    if text.startswith(ENC_PREFIX):
        return keyring.decrypt(text[len(ENC_PREFIX):])
    return substitute_env(text, environ)
