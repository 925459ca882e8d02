"""``GET /api/events``: committed changes as server-sent events, for open staff pages.

Each client gets its own subscription to the process's ``EventBus``. Waiting for the next event
blocks, so it runs in a worker thread (with its own limiter: open pages must not starve the
request handlers of threads); every wait is short, so a closed page ends its stream within about
a second. A comment line every ``KEEPALIVE`` seconds keeps proxies from closing an idle stream.
A subscriber that fell behind (its queue overflowed) gets ``reload``: fetch everything again.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.api.deps import ViewerDep
from app.events import EventBus, Subscription

router = APIRouter(tags=["events"])

KEEPALIVE = 15.0  # seconds between keep-alive comments
WAIT = 1.0  # seconds of one blocking wait: how soon a closed stream notices
RETRY_MS = 2000  # how long EventSource waits before reconnecting
MAX_STREAMS = 500
_LIMITER: anyio.CapacityLimiter | None = None


def _limiter() -> anyio.CapacityLimiter:
    global _LIMITER  # created lazily: a limiter belongs to a running event loop
    if _LIMITER is None:
        _LIMITER = anyio.CapacityLimiter(MAX_STREAMS)
    return _LIMITER


def _message(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(request: Request, bus: EventBus) -> AsyncIterator[str]:
    with bus.subscribe() as sub:
        yield f"retry: {RETRY_MS}\n" + _message("hello", {})
        last_sent = time.monotonic()
        while not await request.is_disconnected():
            event = await anyio.to_thread.run_sync(sub.get, WAIT, limiter=_limiter())
            if sub.overflowed:
                _drain(sub)
                sub.overflowed = False
                yield _message("reload", {})
                last_sent = time.monotonic()
            elif event is not None:
                yield _message("change", event.as_dict())
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= KEEPALIVE:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()


def _drain(sub: Subscription) -> None:
    while sub.get(0) is not None:
        pass


@router.get(
    "/api/events",
    summary="Server-sent events: committed changes (event 'change'), or 'reload'",
    response_class=StreamingResponse,
)
async def stream_events(request: Request, _viewer: ViewerDep) -> StreamingResponse:
    bus: EventBus = request.app.state.events
    return StreamingResponse(
        _stream(request, bus),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
