"""Key rotation: re-encrypt a config's `enc:` values under the newest master key.

Only the tokens change. Everything else in the file (comments, key order,
quoting, indentation, line endings) is kept byte for byte, because the new
text is built by splicing new tokens into the original characters at the
positions the YAML parser reported, never by re-serializing YAML.

The master keys come from the same places `serve` reads them
(`$BYOK_MASTER_KEY`, `secrets.master_key_file`), newest first; a value that
already opens with the newest key alone is left untouched, so running the
command twice changes nothing the second time.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from proxy.config.secrets import ENC_PREFIX, Keyring, SecretError


class RotationError(Exception):
    """The file cannot be rotated; the message says where and why, never a value."""


@dataclass
class RotationResult:
    text: str
    rotated: list[int] = field(default_factory=list)   # line numbers of re-encrypted values
    current: list[int] = field(default_factory=list)   # line numbers already under the newest key


@dataclass(frozen=True)
class _EncValue:
    start: int   # character offsets of the scalar in the source, quotes included
    end: int
    line: int
    token: str   # without the enc: prefix


def rotate_text(text: str, keyring: Keyring) -> RotationResult:
    """The same config text with every `enc:` token re-encrypted under `keyring.keys[0]`."""
    if not keyring.keys:
        raise RotationError("no master key: set BYOK_MASTER_KEY (newest key first) or secrets.master_key_file")
    try:
        keyring.check()
    except SecretError as exc:
        raise RotationError(str(exc)) from None
    newest = Keyring(keyring.keys[:1])
    result = RotationResult(text="")
    pieces: list[str] = []
    cursor = 0
    problems: list[str] = []
    for value in _enc_values(text):
        span = text[value.start:value.end]
        old = ENC_PREFIX + value.token
        if span.count(old) != 1:
            problems.append(f"line {value.line}: the enc: value must be written on one line to be rotated in place")
            continue
        try:
            newest.decrypt(value.token)
            result.current.append(value.line)
            continue
        except SecretError:
            pass
        try:
            plaintext = keyring.decrypt(value.token)
        except SecretError as exc:
            problems.append(f"line {value.line}: {exc}")
            continue
        new = newest.encrypt(plaintext)
        pieces.append(text[cursor:value.start])
        pieces.append(span.replace(old, new))
        cursor = value.end
        result.rotated.append(value.line)
    if problems:
        raise RotationError("\n".join(problems))
    pieces.append(text[cursor:])
    result.text = "".join(pieces)
    return result


def _enc_values(text: str) -> list[_EncValue]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise RotationError(f"the config is not valid YAML: {exc}") from None
    found: dict[int, _EncValue] = {}  # by offset: an alias yields the same node again
    for node in _scalars(root):
        value = node.value
        if node.tag == "tag:yaml.org,2002:str" and isinstance(value, str) and value.startswith(ENC_PREFIX):
            start, end = node.start_mark.index, node.end_mark.index
            found[start] = _EncValue(start, end, node.start_mark.line + 1, value[len(ENC_PREFIX):])
    return [found[offset] for offset in sorted(found)]


def _scalars(node: Node | None) -> Iterator[ScalarNode]:
    stack = [node] if node is not None else []
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ScalarNode):
            yield current
        elif isinstance(current, SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, MappingNode):
            for key, item in current.value:
                stack.extend((key, item))


def keyring_for(text: str, environ: Mapping[str, str]) -> Keyring:
    """The keys `serve` would use for this config: $BYOK_MASTER_KEY, then secrets.master_key_file."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RotationError(f"the config is not valid YAML: {exc}") from None
    secrets = document.get("secrets") if isinstance(document, dict) else None
    key_file = secrets.get("master_key_file") if isinstance(secrets, dict) else None
    try:
        return Keyring.from_sources(environ.get("BYOK_MASTER_KEY"), str(key_file) if key_file else None)
    except SecretError as exc:
        raise RotationError(str(exc)) from None


def write_atomically(path: str, text: str, mode_of: str) -> None:
    """Replace `path` with `text` in one step, with the permission bits of `mode_of` (it holds secrets)."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = os.stat(mode_of).st_mode & 0o777
    handle, temporary = tempfile.mkstemp(prefix=".byok-rotate-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as output:
            output.write(text)
            output.flush()
            os.fsync(output.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read_config_text(path: str) -> str:
    """The file exactly as written: newline="" keeps CRLF line endings as they are."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except OSError as exc:
        raise RotationError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RotationError(f"{path} is not UTF-8 text") from None
