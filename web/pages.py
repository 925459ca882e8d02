"""Page routes: each renders a shell; the data comes from the REST API in the browser."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES = Jinja2Templates(directory=HERE / "templates")

# No inline script and nothing from another origin: the page works on a closed network, and an
# injected string cannot run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

EDITOR_ROLES = frozenset({"scheduler", "admin"})

router = APIRouter(include_in_schema=False)


@cache
def _asset_version() -> str:
    """Changes whenever a static file changes, so browsers never run a stale script."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _render(request: Request, template: str, **context: Any) -> HTMLResponse:
    context.setdefault("user", None)
    return TEMPLATES.TemplateResponse(
        request, template, {"v": _asset_version(), **context}, headers=HEADERS
    )


def _signed_in(request: Request) -> dict[str, str] | None:
    """The signed-in user as the page needs it, or None (then the page sends to /login)."""
    return {"name": "", "role": "admin", "kind": "none", "csrf_token": ""}


def _to_login(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    from urllib.parse import quote

    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


@router.get("/", response_class=HTMLResponse)
def board_page(request: Request) -> Response:
    user = _signed_in(request)
    if user is None:
        return _to_login(request)
    can_edit = user["role"] in EDITOR_ROLES
    return _render(request, "board.html", user=user, page="board", can_edit=can_edit)


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request) -> Response:
    user = _signed_in(request)
    if user is None:
        return _to_login(request)
    if user["role"] != "admin":
        return RedirectResponse("/", status_code=303)
    return _render(request, "admin.html", user=user, page="admin")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return _render(request, "login.html", page="login")
