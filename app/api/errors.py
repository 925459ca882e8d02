"""The one table from domain errors to HTTP answers; every answer says what is wrong."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    LOG.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": "internal error; see the server log"})


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(Exception, _unexpected)
