"""The staff page: server-rendered shells (Jinja2), one stylesheet and plain JavaScript.

Templates hold no patient data: the scripts fetch it from the REST API (``/api/board``,
``/api/orders``, ``/api/steps``...) with the session cookie, and follow changes over
``/api/events``. Everything is served from here, so the page works without internet.
``install(app)`` is called by the composition root (``app.runtime``) and by tests.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from web import pages

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Mount the pages (``/``, ``/login``, ``/admin``) and ``/static`` on ``app``."""
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.include_router(pages.router)
