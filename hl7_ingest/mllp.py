"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol): pure byte handling, no I/O.

A frame is ``0x0B`` + payload + ``0x1C 0x0D``. :class:`FrameDecoder` turns the bytes of one
connection, in whatever pieces the socket delivers them, into events:

* :class:`Frame` — a complete payload (without the framing bytes);
* :class:`Garbage` — bytes outside any frame (before a start block, stray ``\\r\\n`` between
  frames) or an unfinished frame abandoned because a new start block arrived (the sender
  restarted). One event per contiguous run, reported when the run ends (at the next start block
  or at :meth:`FrameDecoder.finish`);
* :class:`Oversized` — a frame whose payload exceeds ``max_frame_bytes``. It is reported as soon
  as the limit is crossed; the decoder then drops every byte (without Garbage events) up to the
  next start block and resynchronises there.

This layer knows nothing about HL7 content.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
_END_FIRST = END_BLOCK[0]


def frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in an MLLP frame."""
    return START_BLOCK + payload + END_BLOCK


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Garbage:
    size: int


@dataclass(frozen=True, slots=True)
class Oversized:
    """``size`` is the number of payload bytes seen when the limit was crossed (a lower bound)."""

    size: int


FrameEvent = Frame | Garbage | Oversized


class _State(enum.Enum):
    OUTSIDE = "outside"  # between frames: bytes are garbage until a start block
    INSIDE = "inside"  # in a frame: bytes are payload until the end block
    DISCARDING = "discarding"  # after Oversized: bytes are dropped until a start block


class FrameDecoder:
    """Incremental MLLP decoder for one connection."""

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self._max = max_frame_bytes
        self._state = _State.OUTSIDE
        self._buffer = bytearray()
        self._garbage = 0

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Consume the next bytes of the stream; return the events they complete, in order."""
        events: list[FrameEvent] = []
        pos = 0
        while pos < len(data):
            if self._state is _State.INSIDE:
                pos = self._feed_inside(data, pos, events)
            else:
                pos = self._feed_outside(data, pos, events)
        return events

    def finish(self) -> list[FrameEvent]:
        """The stream ended: report pending garbage or an unfinished frame, and reset."""
        events: list[FrameEvent] = []
        if self._state is _State.INSIDE:
            events.append(Garbage(len(START_BLOCK) + len(self._buffer)))
        elif self._garbage:
            events.append(Garbage(self._garbage))
        self._reset()
        return events

    def _reset(self) -> None:
        self._state = _State.OUTSIDE
        self._buffer.clear()
        self._garbage = 0

    def _feed_outside(self, data: bytes, pos: int, events: list[FrameEvent]) -> int:
        start = data.find(START_BLOCK, pos)
        skipped = (len(data) if start == -1 else start) - pos
        if self._state is _State.OUTSIDE:
            self._garbage += skipped
        if start == -1:
            return len(data)
        if self._garbage:
            events.append(Garbage(self._garbage))
        self._reset()
        self._state = _State.INSIDE
        return start + len(START_BLOCK)

    def _feed_inside(self, data: bytes, pos: int, events: list[FrameEvent]) -> int:
        restart = data.find(START_BLOCK, pos)
        stop = len(data) if restart == -1 else restart
        previous = len(self._buffer)
        self._buffer += data[pos:stop]
        # An end block may straddle the previous read: rescan its last byte.
        end = self._buffer.find(END_BLOCK, max(previous - 1, 0))
        if end != -1:
            return self._end_frame(end, pos + end + len(END_BLOCK) - previous, events)
        if self._is_oversized():
            events.append(Oversized(len(self._buffer)))
            self._buffer.clear()
            self._state = _State.DISCARDING
            return stop
        if restart != -1:
            events.append(Garbage(len(START_BLOCK) + len(self._buffer)))
            self._buffer.clear()
            return restart + len(START_BLOCK)
        return stop

    def _end_frame(self, end: int, next_pos: int, events: list[FrameEvent]) -> int:
        if end > self._max:
            events.append(Oversized(end))
            self._buffer.clear()
            self._state = _State.DISCARDING
        else:
            events.append(Frame(bytes(self._buffer[:end])))
            self._reset()
        return next_pos

    def _is_oversized(self) -> bool:
        """No end block yet: is the payload certainly longer than the limit?"""
        size = len(self._buffer)
        if size > self._max + 1:
            return True
        # max + 1 bytes ending with 0x1C may still be a max-byte payload plus half an end block.
        return size == self._max + 1 and self._buffer[-1] != _END_FIRST
