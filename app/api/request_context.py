"""Every HTTP request gets an id: in each of its log lines, and back in ``X-Request-ID``.

A sane incoming ``X-Request-ID`` (a proxy's or the client's: 1-64 of letters, digits and
``._:-``) is kept, so one id follows a request through the load balancer; anything else is
replaced by a new random one. One access line per request at INFO (method, path without the
query string, which may carry patient names, status, duration); health checks and scrapes at
DEBUG, since the load balancer and Prometheus ask every few seconds.

The id is bound in the request's task and left there: the outermost error handler (a 500)
runs after this middleware has returned and still logs it. Each request has its own task
under uvicorn, so nothing leaks into another request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import log_context

LOG = logging.getLogger("app.api.access")
HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
QUIET_PATHS = frozenset({"/api/health", "/metrics"})
MAX_LOGGED_PATH = 200


def _printable(path: str) -> str:
    """The decoded path as sent, without control characters (%0A would forge a log line)."""
    return "".join(c if c.isprintable() else "?" for c in path[:MAX_LOGGED_PATH])


def request_id(incoming: str | None) -> str:
    """``incoming`` when it is a sane id, else a new one."""
    if incoming is not None and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Pure ASGI: bind the request id, echo it, log one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(Headers(scope=scope).get(HEADER))
        log_context.bind(request_id=rid)
        started = time.perf_counter()
        status = 500  # when the app raises before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = _printable(str(scope.get("path", "")))
            LOG.log(
                logging.DEBUG if path in QUIET_PATHS else logging.INFO,
                "%s %s %d %.1f ms",
                scope.get("method", ""),
                path,
                status,
                (time.perf_counter() - started) * 1000,
            )
