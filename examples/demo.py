"""The demo: a shop with a login and a cart, its sessions kept server-side in files.

Run it with ``bash scripts/demo.sh`` and open http://127.0.0.1:8000/ in a browser.
The sessions live in ``$SESSION_DIR`` (default ``.demo-data/sessions``): one file per session.
"""

from __future__ import annotations

import html
import os
import secrets
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from starlette_session import SessionMiddleware, get_session, regenerate_session
from starlette_session.backends import BackendType

SESSION_DIR = Path(os.environ.get("SESSION_DIR", ".demo-data/sessions"))
SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>starlette_session demo</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>starlette_session demo</h1>
<p>{greeting} You have viewed this page <b>{views}</b> time(s).</p>
<form method="post" action="{action}">{login}</form>
<h2>Cart</h2>
<ul>{cart}</ul>
<form method="post" action="/cart"><input name="item" placeholder="an item" required>
<button>Add to cart</button></form>
<p><small>Session stored server-side in <code>{directory}</code>;
the cookie holds only its signed id.</small></p>
</body></html>
"""


def cart_items() -> list[str]:
    """Return the cart of the current session (``get_session`` works anywhere in a request)."""
    cart: list[str] = get_session().setdefault("cart", [])
    return cart


async def home(request: Request) -> Response:
    session = request.session
    session["views"] = session.get("views", 0) + 1
    user = session.get("user")
    if user:
        greeting = f"Hello, {html.escape(user)}."
        action, login = "/logout", "<button>Log out</button>"
    else:
        greeting = "You are not logged in."
        action, login = (
            "/login",
            '<input name="user" placeholder="your name" required> <button>Log in</button>',
        )
    items = "".join(f"<li>{html.escape(item)}</li>" for item in cart_items()) or "<li>(empty)</li>"
    page = PAGE.format(
        greeting=greeting,
        views=session["views"],
        action=action,
        login=login,
        cart=items,
        directory=html.escape(str(SESSION_DIR)),
    )
    return HTMLResponse(page)


async def login(request: Request) -> Response:
    form = await request.form()
    regenerate_session()  # a new session id at login, against session fixation
    request.session["user"] = str(form.get("user", ""))[:64]
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()  # deletes the server-side record and the cookie
    return RedirectResponse("/", status_code=303)


async def add_to_cart(request: Request) -> Response:
    form = await request.form()
    # A change inside a nested value is saved without marking the session modified.
    cart_items().append(str(form.get("item", ""))[:64])
    return RedirectResponse("/", status_code=303)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/cart", add_to_cart, methods=["POST"]),
    ],
    middleware=[
        Middleware(
            SessionMiddleware,
            secret_key=SECRET_KEY,
            backend_type=BackendType.file,
            backend_client=SESSION_DIR,
        )
    ],
)
