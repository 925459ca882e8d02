"""Server-sent events from the client's side: ``text/event-stream`` lines -> (event, data)."""

from __future__ import annotations

from collections.abc import Iterator


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream; comments and retry lines are skipped."""
    name, data = "message", ""
    for line in lines:
        if line == "":
            if data:
                yield name, data
            name, data = "message", ""
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
