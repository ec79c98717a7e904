"""The incremental SSE parser: boundaries found as bytes arrive, exact bytes kept."""
import pytest

from proxy.streams.sse import SSEEvent, SSEParser

STREAM = (b'data: {"a": 1}\n\n'
          b': keep-alive comment\n\n'
          b'event: message_start\ndata: {"type": "message_start"}\n\n'
          b'data: line one\ndata: line two\n\n'
          b'data: [DONE]\n\n')


def parse_in_pieces(data: bytes, size: int) -> list[SSEEvent]:
    parser = SSEParser()
    events = []
    for start in range(0, len(data), size):
        events.extend(parser.feed(data[start:start + size]))
    return events + parser.flush()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 1000])
def test_any_split_gives_the_same_events_with_exact_bytes(size):
    events = parse_in_pieces(STREAM, size)
    assert b"".join(e.raw for e in events) == STREAM
    assert [e.data for e in events] == ['{"a": 1}', None, '{"type": "message_start"}', "line one\nline two", "[DONE]"]
    assert events[2].event == "message_start"
    assert events[-1].is_done
    assert events[0].json() == {"a": 1}


@pytest.mark.parametrize("size", [1, 5, 1000])
def test_crlf_and_cr_line_endings(size):
    data = b'data: {"x": 1}\r\n\r\nevent: ping\rdata: {}\r\rdata: [DONE]\r\n\r\n'
    events = parse_in_pieces(data, size)
    assert [e.data for e in events] == ['{"x": 1}', "{}", "[DONE]"]
    assert events[1].event == "ping"
    assert b"".join(e.raw for e in events) == data


def test_event_is_emitted_as_soon_as_its_blank_line_arrives():
    parser = SSEParser()
    assert parser.feed(b"data: first\n") == []
    [event] = parser.feed(b"\ndata: sec")
    assert event.data == "first"
    assert [e.data for e in parser.feed(b"ond\n\n")] == ["second"]


def test_final_event_without_blank_line_is_flushed():
    parser = SSEParser()
    assert parser.feed(b"data: tail") == []
    assert [e.data for e in parser.flush()] == ["tail"]


def test_oversized_event_is_refused():
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(ValueError):
        parser.feed(b"data: " + b"x" * 200)


def test_encoding_round_trip():
    event = SSEEvent.from_json({"k": "v"}, event="content_block_delta")
    assert event.raw == b'event: content_block_delta\ndata: {"k":"v"}\n\n'
    [parsed] = SSEParser().feed(event.raw)
    assert parsed.event == "content_block_delta" and parsed.json() == {"k": "v"}
    assert SSEEvent.from_data("a\nb").raw == b"data: a\ndata: b\n\n"
