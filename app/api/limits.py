"""What a request may carry: integers the database can store, and bounded request bodies.

- ``DbId`` and ``DbOffset`` are the one type of every integer path or query parameter: a row id is
  1..2**31-1 and an offset 0..2**31-1 (PostgreSQL ``INTEGER``); anything else is a 422 from the
  parameter's validation, never a database error. ``tests/adapter/rest/test_input_limits.py``
  walks the OpenAPI schema so that a new integer parameter without these bounds fails.
- ``RequestLimitMiddleware`` reads the body before any route sees it: more than
  ``max_body_bytes`` (``Content-Length`` or counted as it streams in) is a 413; a JSON body
  (``application/json``, ``application/*+json`` or no content type) must be UTF-8 and nested at
  most ``MAX_JSON_DEPTH`` arrays/objects deep, else 400; a NUL character in the URL is a 400
  (PostgreSQL text cannot hold it). Every refusal is ``{"detail": "..."}`` like any other error.
"""

from __future__ import annotations

from array import array
from itertools import accumulate
from typing import Annotated
from urllib.parse import unquote_to_bytes

from annotated_types import Ge, Le
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DB_INT_MAX = 2**31 - 1  # PostgreSQL INTEGER (and every id column) holds at most this
MAX_JSON_DEPTH = 64  # arrays/objects inside each other; DICOM JSON needs a handful

DbId = Annotated[int, Ge(1), Le(DB_INT_MAX)]
"""A row id in a path or query parameter: 1..2**31-1."""
DbOffset = Annotated[int, Ge(0), Le(DB_INT_MAX)]
"""How many rows a page skips: 0..2**31-1."""

_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON parser would go more than ``limit`` arrays/objects deep into ``body``
    (valid or not), found without parsing it and in C-speed passes (milliseconds a MiB).

    Escaped backslashes and quotes go first, so every quote left opens or closes a string;
    the text between pairs of quotes (and after an unclosed one) is string content whose
    brackets do not count. The deepest running sum of the brackets left is the depth.
    """
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(text.split(b'"')[::2]).translate(None, _NOT_BRACKET)
    if len(brackets) <= limit:
        return False
    return max(accumulate(array("b", brackets.translate(_DEPTH_STEP)))) > limit


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True  # FastAPI parses a body without a content type as JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class RequestLimitMiddleware:
    """ASGI middleware: refuse oversized, undecodable or too deeply nested requests up front."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int = MAX_JSON_DEPTH
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check_url(scope)
        headers = Headers(scope=scope)
        if refusal is None:
            refusal = self._check_length(headers.get("content-length"))
        if refusal is not None:
            await _refuse(scope, receive, send, *refusal)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _refuse(scope, receive, send, *self._too_large())
                return
            if not message.get("more_body", False):
                break
        if body and _is_json(headers.get("content-type")):
            refusal = self._check_json(bytes(body))
            if refusal is not None:
                await _refuse(scope, receive, send, *refusal)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self) -> tuple[int, str]:
        return 413, f"the request body is larger than {self.max_body_bytes} bytes"

    def _check_url(self, scope: Scope) -> tuple[int, str] | None:
        path: str = scope.get("path", "")
        query: bytes = scope.get("query_string", b"")
        if "\x00" in path or b"\x00" in unquote_to_bytes(query):
            return 400, "the URL contains a NUL character"
        return None

    def _check_length(self, value: str | None) -> tuple[int, str] | None:
        if value is None:
            return None
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            return 400, "Content-Length is not a number"
        if int(text) > self.max_body_bytes:
            return self._too_large()
        return None

    def _check_json(self, body: bytes) -> tuple[int, str] | None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return 400, f"the JSON body is not valid UTF-8 (byte {exc.start})"
        if json_too_deep(body, self.max_json_depth):
            return 400, f"the JSON body is nested deeper than {self.max_json_depth} levels"
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, as one message; then the real channel (disconnect notices)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    response = JSONResponse(status_code=status, content={"detail": detail})
    await response(scope, receive, send)
