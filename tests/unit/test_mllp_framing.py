"""MLLP framing: FrameDecoder events for every way bytes can arrive."""

from __future__ import annotations

import pytest

from hl7_ingest.mllp import (
    END_BLOCK,
    START_BLOCK,
    Frame,
    FrameDecoder,
    FrameEvent,
    Garbage,
    Oversized,
    frame,
)

MSG1 = b"MSH|^~\\&|RIS|H|MWL|H|20250101||ORM^O01|1|P|2.5\rPID|1||P1\r"
MSG2 = b"MSH|^~\\&|RIS|H|MWL|H|20250101||ORM^O01|2|P|2.5\r"
MSG3 = b"MSH|^~\\&|RIS|H|MWL|H|20250101||ADT^A08|3|P|2.5\r"


def feed_bytewise(decoder: FrameDecoder, data: bytes) -> list[FrameEvent]:
    events: list[FrameEvent] = []
    for i in range(len(data)):
        events += decoder.feed(data[i : i + 1])
    return events


def feed_chunks(decoder: FrameDecoder, data: bytes, size: int) -> list[FrameEvent]:
    events: list[FrameEvent] = []
    for i in range(0, len(data), size):
        events += decoder.feed(data[i : i + size])
    return events


def test_constants_and_frame() -> None:
    assert START_BLOCK == b"\x0b"
    assert END_BLOCK == b"\x1c\x0d"
    assert frame(b"abc") == b"\x0babc\x1c\x0d"
    assert frame(b"") == b"\x0b\x1c\x0d"


def test_one_frame_in_one_read() -> None:
    assert FrameDecoder(1024).feed(frame(MSG1)) == [Frame(MSG1)]


def test_empty_feed_and_empty_frame() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(b"") == []
    assert decoder.feed(frame(b"")) == [Frame(b"")]


def test_frame_fed_byte_by_byte() -> None:
    decoder = FrameDecoder(1024)
    assert feed_bytewise(decoder, frame(MSG1) + frame(MSG2)) == [Frame(MSG1), Frame(MSG2)]
    assert decoder.finish() == []


@pytest.mark.parametrize("size", [2, 3, 7, 64])
def test_frames_split_across_reads_of_any_size(size: int) -> None:
    stream = frame(MSG1) + frame(MSG2) + frame(MSG3)
    assert feed_chunks(FrameDecoder(1024), stream, size) == [Frame(MSG1), Frame(MSG2), Frame(MSG3)]


def test_end_block_split_between_reads() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(START_BLOCK + MSG1 + b"\x1c") == []
    assert decoder.feed(b"\x0d") == [Frame(MSG1)]


def test_lone_0x1c_inside_payload_is_payload() -> None:
    payload = b"A\x1cB\x1c"
    decoder = FrameDecoder(1024)
    assert decoder.feed(START_BLOCK + payload) == []
    assert decoder.feed(b"C" + END_BLOCK) == [Frame(payload + b"C")]


def test_three_frames_in_one_read() -> None:
    stream = frame(MSG1) + frame(MSG2) + frame(MSG3)
    assert FrameDecoder(1024).feed(stream) == [Frame(MSG1), Frame(MSG2), Frame(MSG3)]


def test_garbage_before_start_block_is_reported_and_skipped() -> None:
    assert FrameDecoder(1024).feed(b"hello" + frame(MSG1)) == [Garbage(5), Frame(MSG1)]


def test_stray_newlines_between_frames() -> None:
    stream = frame(MSG1) + b"\r\n" + frame(MSG2)
    assert FrameDecoder(1024).feed(stream) == [Frame(MSG1), Garbage(2), Frame(MSG2)]
    # Fed byte by byte the run is still reported once, with its whole size.
    assert feed_bytewise(FrameDecoder(1024), stream) == [Frame(MSG1), Garbage(2), Frame(MSG2)]


def test_garbage_run_spanning_reads_is_one_event() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(b"abc") == []
    assert decoder.feed(b"de") == []
    assert decoder.feed(frame(MSG1)) == [Garbage(5), Frame(MSG1)]


def test_finish_reports_trailing_garbage() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(frame(MSG1) + b"\r\n") == [Frame(MSG1)]
    assert decoder.finish() == [Garbage(2)]
    assert decoder.finish() == []


def test_finish_reports_unfinished_frame_as_garbage() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(START_BLOCK + b"MSH|partial") == []
    assert decoder.finish() == [Garbage(1 + len(b"MSH|partial"))]
    # The decoder is usable again after finish().
    assert decoder.feed(frame(MSG1)) == [Frame(MSG1)]


def test_start_block_inside_unfinished_frame_restarts() -> None:
    partial = b"MSH|^~\\&|RIS|trunc"
    stream = START_BLOCK + partial + frame(MSG1)
    expected = [Garbage(1 + len(partial)), Frame(MSG1)]
    assert FrameDecoder(1024).feed(stream) == expected
    assert feed_bytewise(FrameDecoder(1024), stream) == expected


def test_start_block_right_after_start_block() -> None:
    assert FrameDecoder(1024).feed(START_BLOCK + frame(MSG1)) == [Garbage(1), Frame(MSG1)]


def test_exactly_max_bytes_is_accepted() -> None:
    payload = b"x" * 10
    assert FrameDecoder(10).feed(frame(payload)) == [Frame(payload)]
    assert feed_bytewise(FrameDecoder(10), frame(payload)) == [Frame(payload)]


def test_max_plus_one_is_oversized() -> None:
    payload = b"x" * 11
    assert FrameDecoder(10).feed(frame(payload)) == [Oversized(11)]
    # Fed byte by byte it is reported as soon as the limit is crossed, before the end block.
    decoder = FrameDecoder(10)
    assert feed_bytewise(decoder, START_BLOCK + payload) == [Oversized(11)]
    assert decoder.feed(END_BLOCK) == []


def test_max_payload_ending_with_0x1c_waits_for_the_next_byte() -> None:
    payload = b"x" * 9 + b"\x1c"
    decoder = FrameDecoder(10)
    assert decoder.feed(START_BLOCK + payload) == []
    assert decoder.feed(b"\x1c") == []  # 11 payload bytes seen, but the last may start an end block
    assert decoder.feed(b"y") == [Oversized(12)]


def test_oversized_then_resync_at_next_start_block() -> None:
    big = b"y" * (len(MSG2) + 10)
    stream = frame(big) + b"\r\n" + frame(MSG2)
    limit = len(MSG2)
    assert FrameDecoder(limit).feed(stream) == [Oversized(len(big)), Frame(MSG2)]
    assert feed_bytewise(FrameDecoder(limit), stream) == [Oversized(limit + 1), Frame(MSG2)]


def test_oversized_drops_bytes_silently_until_start_block() -> None:
    decoder = FrameDecoder(5)
    assert decoder.feed(START_BLOCK + b"123456789") == [Oversized(9)]
    assert decoder.feed(b"more of the big frame" + END_BLOCK + b"\r\n") == []
    assert decoder.feed(b"tail") == []
    assert decoder.feed(frame(b"ok")) == [Frame(b"ok")]
    assert decoder.finish() == []


def test_oversized_frame_interrupted_by_start_block_resyncs() -> None:
    stream = START_BLOCK + b"z" * 20 + frame(b"ok")
    assert FrameDecoder(10).feed(stream) == [Oversized(20), Frame(b"ok")]


def test_frame_after_garbage_after_frame_in_pieces() -> None:
    stream = b"\r\n" + frame(MSG1) + b"junk" + frame(MSG2) + b"\n"
    decoder = FrameDecoder(1024)
    events = feed_chunks(decoder, stream, 5) + decoder.finish()
    assert events == [Garbage(2), Frame(MSG1), Garbage(4), Frame(MSG2), Garbage(1)]


def test_max_frame_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(0)
