"""Fuzzing the SSE parser: however the bytes are split into reads, the same events come out as
from one read, the fields match a straightforward reading of the SSE spec, and nothing but
ValueError (an event over the size limit) ever escapes."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.streams.sse import SSEEvent, SSEParser

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- generators ----------------------------------------------------------------------------------------

VALUE_TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)
LINE_END = st.sampled_from(["\n", "\r\n", "\r"])
FIELD_LINE = st.one_of(
    st.builds(lambda value: f"data: {value}", VALUE_TEXT),
    st.builds(lambda value: f"data:{value}", VALUE_TEXT),
    st.just("data"),
    st.builds(lambda value: f"event: {value}", VALUE_TEXT),
    st.builds(lambda value: f"id: {value}", VALUE_TEXT),
    st.builds(lambda value: f": {value}", VALUE_TEXT),
    st.builds(lambda value: f"retry: {value}", st.integers(0, 10_000).map(str)),
    st.builds(lambda value: f"x-unknown: {value}", VALUE_TEXT),
    st.just("data: [DONE]"),
    st.just('data: {"choices": [{"delta": {"content": "hi"}}]}'),
)


@st.composite
def event_streams(draw) -> bytes:
    """Well-formed event blocks, each line ended by \\n, \\r\\n or \\r, each block by a blank line."""
    out = []
    for _ in range(draw(st.integers(0, 8))):
        for line in draw(st.lists(FIELD_LINE, min_size=1, max_size=5)):
            out.append(line + draw(LINE_END))
        out.append(draw(LINE_END))
    text = "".join(out)
    return text.encode("utf-8")


RAW_BYTES = st.binary(max_size=300) | st.lists(st.sampled_from([b"data: x", b"\r", b"\n", b"\r\n", b":", b" ",
                                                                b"event: e", b"\xff", b"\n\n"]),
                                                max_size=60).map(b"".join)


@st.composite
def splits(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.sets(st.integers(0, len(data)), max_size=12)))
    pieces, start = [], 0
    for cut in cuts + [len(data)]:
        pieces.append(data[start:cut])
        start = cut
    return pieces


def parse_all(pieces: list[bytes], parser: SSEParser | None = None) -> list[bytes]:
    parser = parser or SSEParser()
    events = []
    for piece in pieces:
        events.extend(event.raw for event in parser.feed(piece))
    events.extend(event.raw for event in parser.flush())
    return events


def spec_blocks(data: bytes) -> list[tuple[str | None, str | None]]:
    """(event, data) per block, read the way the SSE spec reads lines; like the parser's flush,
    a last block without its blank line still counts when the stream ends."""
    blocks = []
    event, data_lines, seen_field = None, [], False
    for line in re.split(r"\r\n|\r|\n", data.decode("utf-8", errors="replace")) + [""]:
        if line == "":
            if seen_field:
                blocks.append((event, "\n".join(data_lines) if data_lines else None))
            event, data_lines, seen_field = None, [], False
            continue
        seen_field = True
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data_lines.append(value)
        elif name == "event":
            event = value
    return blocks


def fields(raws: list[bytes]) -> list[tuple[str | None, str | None]]:
    events = [SSEEvent(raw) for raw in raws]
    return [(event.event, event.data) for event in events]


# ---- properties ---------------------------------------------------------------------------------------------

@FUZZ
@given(st.data())
def test_any_split_of_an_event_stream_gives_the_same_events_as_one_read(data):
    stream = data.draw(event_streams())
    pieces = data.draw(splits(stream))
    assert parse_all(pieces) == parse_all([stream])


@FUZZ
@given(st.data())
def test_any_split_of_arbitrary_bytes_gives_the_same_events_as_one_read(data):
    stream = data.draw(RAW_BYTES)
    pieces = data.draw(splits(stream))
    assert parse_all(pieces) == parse_all([stream])


@FUZZ
@given(st.data())
def test_byte_at_a_time_equals_one_read(data):
    stream = data.draw(event_streams() | RAW_BYTES)
    assert parse_all([stream[i:i + 1] for i in range(len(stream))]) == parse_all([stream])


@FUZZ
@given(event_streams())
def test_fields_match_the_spec_reading(stream):
    assert fields(parse_all([stream])) == spec_blocks(stream)


@FUZZ
@given(event_streams())
def test_every_event_comes_out_terminated_even_the_flushed_one(stream):
    for raw in parse_all([stream.rstrip(b"\r\n")]):
        # each event's bytes alone form exactly that one event: a client given them dispatches it
        assert fields(parse_all([raw])) == fields([raw])
        assert raw.endswith((b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r", b"\r\n\n", b"\n\r\n", b"\r\r\n"))


@FUZZ
@given(st.data())
def test_events_reassemble_the_stream(data):
    """Passthrough forwards event.raw: every byte comes out once, in order; only blank lines
    between events (which carry nothing) may be left out."""
    stream = data.draw(event_streams() | RAW_BYTES)
    parser = SSEParser()
    out = b""
    for piece in data.draw(splits(stream)):
        out += b"".join(event.raw for event in parser.feed(piece))
    out += parser._buffer  # what has not formed a complete event yet
    assert out.translate(None, b"\r\n") == stream.translate(None, b"\r\n")


@FUZZ
@given(st.data(), st.integers(1, 64))
def test_only_value_error_escapes_and_only_for_oversize(data, limit):
    stream = data.draw(event_streams() | RAW_BYTES)
    parser = SSEParser(max_event_bytes=limit)
    try:
        for piece in data.draw(splits(stream)):
            for event in parser.feed(piece):
                event.data, event.event  # decoding fields never raises either
        parser.flush()
    except ValueError as exc:
        assert "size limit" in str(exc)
        assert len(stream) > limit


@FUZZ
@given(event_streams() | RAW_BYTES)
def test_json_of_any_event_raises_only_value_error(stream):
    parser = SSEParser()
    for event in parser.feed(stream) + parser.flush():
        try:
            event.json()
        except ValueError:
            pass
