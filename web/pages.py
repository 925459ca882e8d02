"""Page routes: each renders a shell; the data comes from the REST API in the browser."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app.api.deps import optional_principal
from app.domain.access import Principal, Role

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


def _user(principal: Principal | None) -> dict[str, str] | None:
    """What the page shell needs to know of the signed-in user (never patient data)."""
    if principal is None or principal.kind != "user":
        return None  # pages are for people signed in; API tokens are for programs
    return {
        "name": principal.name,
        "role": principal.role.value,
        "kind": principal.kind,
        "csrf_token": principal.csrf_token or "",
    }


def _to_login(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


SignedIn = Annotated[Principal | None, Depends(optional_principal)]


@router.get("/", response_class=HTMLResponse)
def board_page(request: Request, principal: SignedIn) -> Response:
    user = _user(principal)
    if user is None:
        return _to_login(request)
    can_edit = Role(user["role"]).allows(Role.SCHEDULER)
    return _render(request, "board.html", user=user, page="board", can_edit=can_edit)


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, principal: SignedIn) -> Response:
    user = _user(principal)
    if user is None:
        return _to_login(request)
    if user["role"] != Role.ADMIN:
        return RedirectResponse("/", status_code=303)
    return _render(request, "admin.html", user=user, page="admin")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return _render(request, "login.html", page="login")
