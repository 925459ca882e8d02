"""The one table from domain errors to HTTP answers; every answer says what is wrong.

Input no validation caught still gets a 4xx with a reason, never a 500: text that is not valid
Unicode (a lone surrogate escape), nesting too deep for the parser, and values the database
refuses (``DataError``: a number out of range, NUL in PostgreSQL text). ``app.api.limits``
refuses most of these before a route runs; these handlers are the net behind it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from app.domain.access import AuthError, ForbiddenError, RateLimitedError
from app.domain.errors import (
    ConflictError,
    DomainError,
    InvalidQueryError,
    NotFoundError,
    ValidationError,
    lookup,
)

LOG = logging.getLogger(__name__)

HTTP_STATUS: dict[type[DomainError], int] = {
    InvalidQueryError: 400,
    ValidationError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    AuthError: 401,
    ForbiddenError: 403,
    RateLimitedError: 429,
}


def status_for(error: DomainError) -> int:
    return lookup(HTTP_STATUS, error, 400)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    body: dict[str, str] = {"detail": exc.message}
    if exc.field:
        body["field"] = exc.field
    headers: dict[str, str] = {}
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(status_code=status_for(exc), content=body, headers=headers)


# Exceptions that only input causes -> (status, what to tell the client).
INPUT_ERRORS: dict[type[Exception], tuple[int, str]] = {
    UnicodeError: (400, "the request holds text that is not valid Unicode"),
    RecursionError: (400, "the request is nested too deeply"),
    OverflowError: (422, "a number in the request is too large"),
    DataError: (422, "the database cannot store a value of this request"),
}


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    status, detail = lookup(INPUT_ERRORS, exc, (400, "the request cannot be processed"))
    # The exception's text may quote the values (patient data): only its type at WARNING.
    LOG.warning("refused %s %s: %s", request.method, request.url.path, type(exc).__name__)
    LOG.debug("refused input", exc_info=True)
    return JSONResponse(status_code=status, content={"detail": detail})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    LOG.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": "internal error; see the server log"})


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    for kind in INPUT_ERRORS:
        app.add_exception_handler(kind, _input_error)
    app.add_exception_handler(Exception, _unexpected)
    _document_422(app)


def _document_422(app: FastAPI) -> None:
    """Make the schema tell the truth about 422: FastAPI documents only its own parameter
    and body errors (``detail``: a list), but a service's ``ValidationError`` is a 422 too,
    with ``detail`` a sentence and the ``field`` it is about."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        error = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
        if error is not None:
            properties = error.setdefault("properties", {})
            listed = properties.get("detail", {"type": "array"})
            properties["detail"] = {
                "anyOf": [listed, {"type": "string"}],
                "title": "Detail",
                "description": "parameter and body errors, or one sentence from the service",
            }
            properties["field"] = {"type": "string", "title": "Field"}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
