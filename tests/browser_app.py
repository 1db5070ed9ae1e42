"""The FastAPI app that tests/test_browser.py serves with uvicorn and drives with headless Chromium.

Four sub-apps, each with its own ``SessionMiddleware`` whose cookie has its own name and is
scoped to the sub-app's path, so one browser can hold all four sessions without them meeting:

* ``/lax``: a signed-cookie session (the defaults, SameSite=Lax), allowed to split up to 16 KB;
* ``/strict``: the same with ``same_site="strict"``;
* ``/secure``: the same with ``https_only=True`` (the ``Secure`` attribute);
* ``/server``: a server-side session in a ``MemoryBackend``, with a login form that moves the
  session to a new id (``RegeneratedSessionDep``).

Every page shows what the server received in ``<pre id="state">``: the host it was asked for,
the names of the cookies the request carried, and the session (a large value as its length and
SHA-256). ``/links`` is the page on another site that links back to the sub-apps.
"""

from __future__ import annotations

import hashlib
import html
import json
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from starlette_session import SessionMiddleware
from starlette_session.backends.memory import MemoryBackend
from starlette_session.fastapi import RegeneratedSessionDep, SessionDep

SECRET_KEY = "browser-test-secret"
#: Set by ``/<site>/login`` beside the session; not HttpOnly, so page scripts can read it.
VISIBLE_COOKIE = "visible"
#: Past the default 8 KB ceiling, so a ~10 KB session can be split over chunk cookies.
MAX_COOKIE_SIZE = 16384

SITES: dict[str, dict[str, Any]] = {
    "lax": {"session_cookie": "session"},
    "strict": {"session_cookie": "strict_session", "same_site": "strict"},
    "secure": {"session_cookie": "secure_session", "https_only": True},
    "server": {"session_cookie": "server_session", "backend": MemoryBackend()},
}


def blob(size: int) -> str:
    """Return ``size`` characters of text that does not repeat (hex of a SHA-256 chain)."""
    parts: list[str] = []
    digest = b"starlette_session"
    while sum(map(len, parts)) < size:
        digest = hashlib.sha256(digest).digest()
        parts.append(digest.hex())
    return "".join(parts)[:size]


def summary(session: dict[str, Any]) -> dict[str, Any]:
    """The session as shown on a page: ``blob`` as its length and SHA-256, the rest as is."""
    shown = {key: value for key, value in session.items() if key != "blob"}
    if "blob" in session:
        value = str(session["blob"])
        shown["blob"] = {"length": len(value), "sha256": hashlib.sha256(value.encode()).hexdigest()}
    return shown


def page(request: Request, session: dict[str, Any], body: str = "") -> HTMLResponse:
    state = {
        "host": request.url.hostname,
        "path": request.url.path,
        "cookies": sorted(request.cookies),
        "session": summary(session),
    }
    text = html.escape(json.dumps(state, sort_keys=True))
    return HTMLResponse(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{request.url.path}</title></head>'
        f'<body><pre id="state">{text}</pre>{body}</body></html>'
    )


def site(name: str, options: dict[str, Any]) -> FastAPI:
    """One sub-app: the same routes, sync and async, behind its own ``SessionMiddleware``."""
    app = FastAPI()
    app.add_middleware(
        SessionMiddleware,
        secret_key=SECRET_KEY,
        path=f"/{name}",
        max_cookie_size=MAX_COOKIE_SIZE,
        **options,
    )

    @app.get("/whoami")
    def whoami(request: Request, session: SessionDep) -> Response:
        return page(request, session)

    @app.get("/login")
    async def login(request: Request, session: SessionDep, user: str) -> Response:
        session["user"] = user
        response = page(request, session)
        response.set_cookie(VISIBLE_COOKIE, "yes", path=f"/{name}", httponly=False, samesite="lax")
        return response

    @app.get("/form")
    def form(request: Request, session: SessionDep) -> Response:
        body = (
            f'<form method="post" action="/{name}/signin"><input id="user" name="user">'
            '<button id="submit">Sign in</button></form>'
        )
        return page(request, session, body)

    @app.post("/signin")
    async def signin(session: RegeneratedSessionDep, user: Annotated[str, Form()]) -> Response:
        session["user"] = user
        return RedirectResponse(f"/{name}/whoami", status_code=303)

    @app.get("/count")
    def count(request: Request, session: SessionDep) -> Response:
        session["count"] = int(session.get("count", 0)) + 1
        return page(request, session)

    @app.get("/fill")
    async def fill(request: Request, session: SessionDep, size: int) -> Response:
        session["blob"] = blob(size)
        return page(request, session, f'<a id="bump" href="/{name}/bump">bump</a>')

    @app.get("/bump")
    async def bump(request: Request, session: SessionDep) -> Response:
        session["bumps"] = int(session.get("bumps", 0)) + 1
        return page(request, session, f'<a id="bump" href="/{name}/bump">bump</a>')

    @app.get("/logout")
    def logout(request: Request, session: SessionDep) -> Response:
        session.clear()
        return page(request, session)

    return app


app = FastAPI()


@app.get("/health")
def health() -> Response:
    return PlainTextResponse("ok")


@app.get("/links", response_class=HTMLResponse)
def links(to: str) -> str:
    """A page that links to every sub-app's ``/whoami`` at the origin ``to``."""
    anchors = "".join(
        f'<a id="{name}" href="{html.escape(to, quote=True)}/{name}/whoami">{name}</a> ' for name in SITES
    )
    head = '<head><meta charset="utf-8"><title>links</title></head>'
    return f"<!doctype html><html>{head}<body>{anchors}</body></html>"


for _name, _options in SITES.items():
    app.mount(f"/{_name}", site(_name, _options))
