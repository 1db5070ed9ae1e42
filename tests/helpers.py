"""Helpers shared by the tests: requests through an ASGI app, cookies, a demo app, a fake clock.

HTTP goes through ``httpx.AsyncClient`` + ``httpx.ASGITransport`` (works with every supported
Starlette, unlike ``TestClient``, which needs a different httpx per Starlette version). A new
client is made per request, so no cookie jar carries state between requests by accident:
tests send the Cookie header they mean to send. WebSockets are driven with raw ASGI messages.
"""

from __future__ import annotations

import json
import socket
from base64 import b64decode, b64encode
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import itsdangerous
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message
from starlette.websockets import WebSocket

from starlette_session import SessionMiddleware, get_session, regenerate_session
from starlette_session.backends.memory import MemoryBackend

SECRET = "test-secret-key-0123456789"
BASE_URL = "http://testserver"
CLEARED = "expires=Thu, 01 Jan 1970 00:00:00 GMT"

Headers = Sequence[tuple[str | bytes, str | bytes]]
T0 = 1_700_000_000.0
"""The fake clock's default start, a Unix time."""


class FakeClock:
    """A settable Unix clock; ``hook`` runs on the call numbered ``hook_at`` (1-based)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.calls = 0
        self.hook: Callable[[], None] | None = None
        self.hook_at = 1

    def __call__(self) -> float:
        self.calls += 1
        if self.hook is not None and self.calls == self.hook_at:
            hook, self.hook = self.hook, None
            hook()
        return self.now


def closed_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on (bound, then released): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def request(
    app: ASGIApp,
    path: str = "/read",
    *,
    cookie: str | bytes | None = None,
    headers: Headers = (),
    method: str = "GET",
    raise_app_exceptions: bool = True,
) -> httpx.Response:
    """Send one request to ``app`` and return the response.

    Args:
        app: the ASGI app.
        path: the request path (with query string).
        cookie: the Cookie header to send, if any.
        headers: more request headers, sent as given (repeats allowed).
        method: the HTTP method.
        raise_app_exceptions: re-raise an exception the app raised (else: a 500 response).
    """
    raw = [(_bytes(name), _bytes(value)) for name, value in headers]
    if cookie is not None:
        raw.append((b"cookie", _bytes(cookie)))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        return await client.request(method, path, headers=raw)


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


def set_cookies(response: httpx.Response) -> list[str]:
    """Return the Set-Cookie header values of ``response``, in order."""
    return response.headers.get_list("set-cookie")


def only_set_cookie(response: httpx.Response) -> str:
    """Return the single Set-Cookie header value of ``response`` (fails if not exactly one)."""
    values = set_cookies(response)
    assert len(values) == 1, values
    return values[0]


def cookie_pair(set_cookie: str) -> str:
    """Return ``name=value`` from a Set-Cookie header value: what a browser sends back."""
    return set_cookie.split(";", 1)[0]


def cookie_value(set_cookie: str) -> str:
    """Return the value from a Set-Cookie header value."""
    return cookie_pair(set_cookie).split("=", 1)[1]


def sign(payload: bytes, secret: str = SECRET) -> str:
    """Sign ``payload`` the way Starlette does: ``TimestampSigner(secret).sign(base64(payload))``."""
    return itsdangerous.TimestampSigner(secret).sign(b64encode(payload)).decode("ascii")


def sign_json(data: object, secret: str = SECRET) -> str:
    """Return a Starlette-format cookie value holding ``data`` as JSON."""
    return sign(json.dumps(data).encode("utf-8"), secret)


def unsign_json(value: str, secret: str = SECRET, max_age: int | None = None) -> Any:
    """Verify a Starlette-format cookie value with itsdangerous directly and return its JSON."""
    signed = itsdangerous.TimestampSigner(secret).unsign(value, max_age=max_age)
    return json.loads(b64decode(signed))


class RecordingBackend(MemoryBackend):
    """A ``MemoryBackend`` that records every call, to prove what did and did not reach the store."""

    #: Keys are the public ids, so tests can name records by the cookie's id; hashing at rest
    #: is proven on every backend in tests/test_backend_contract.py.
    hash_ids = False

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.writes: list[tuple[str, bytes, int]] = []
        self.removes: list[str] = []
        self.touches: list[tuple[str, int]] = []

    @property
    def records(self) -> dict[str, bytes]:
        """The stored records, id -> bytes (expiry left out)."""
        return {key: data for key, (data, _) in self._data.items()}

    async def read(self, session_id: str) -> bytes | None:
        self.reads.append(session_id)
        return await super().read(session_id)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        self.writes.append((session_id, data, ttl))
        await super().write(session_id, data, ttl)

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        self.writes.append((session_id, data, ttl))
        return await super().create(session_id, data, ttl)

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        self.writes.append((session_id, data, ttl))
        return await super().replace(session_id, data, ttl)

    async def remove(self, session_id: str) -> None:
        self.removes.append(session_id)
        await super().remove(session_id)

    async def touch(self, session_id: str, ttl: int) -> bool:
        self.touches.append((session_id, ttl))
        return await super().touch(session_id, ttl)


# -- a demo app: the same routes for every configuration ------------------------------------


async def read(request: Request) -> Response:
    return JSONResponse(dict(request.session))


async def write(request: Request) -> Response:
    request.session.update(request.query_params)
    return JSONResponse(dict(request.session))


async def clear(request: Request) -> Response:
    request.session.clear()
    return JSONResponse(dict(request.session))


async def noop(request: Request) -> Response:
    return PlainTextResponse("ok")


async def has_session(request: Request) -> Response:
    return JSONResponse({"has_session": "session" in request.scope})


async def cart_init(request: Request) -> Response:
    request.session["cart"] = []
    return JSONResponse(dict(request.session))


async def cart_add(request: Request) -> Response:
    # A change inside a nested value: no flag is set on the session itself.
    request.session["cart"].append(request.query_params["item"])
    return JSONResponse(dict(request.session))


async def via_helper(request: Request) -> Response:
    session = get_session()
    assert session is request.scope["session"]
    session["helper"] = "yes"
    return JSONResponse(dict(session))


def via_helper_sync(request: Request) -> Response:
    # Sync endpoints run in a worker thread: the context variable must follow.
    session = get_session()
    session["sync"] = "yes"
    return JSONResponse(dict(session))


async def regenerate(request: Request) -> Response:
    session = regenerate_session(clear=request.query_params.get("clear") == "1")
    session.update({key: value for key, value in request.query_params.items() if key != "clear"})
    return JSONResponse(dict(session))


async def ws_read(websocket: WebSocket) -> None:
    await websocket.accept()
    if "session" in websocket.scope:
        await websocket.send_json({"session": dict(websocket.session), "helper": dict(get_session())})
    else:
        await websocket.send_json({"session": None})
    await websocket.close()


def demo_routes() -> list[BaseRoute]:
    """Return the demo routes: read, write (query params), clear, nested changes, helpers."""
    return [
        Route("/read", read),
        Route("/write", write),
        Route("/clear", clear),
        Route("/noop", noop),
        Route("/has-session", has_session),
        Route("/cart-init", cart_init),
        Route("/cart-add", cart_add),
        Route("/helper", via_helper),
        Route("/helper-sync", via_helper_sync),
        Route("/regenerate", regenerate),
        WebSocketRoute("/ws", ws_read),
    ]


def make_app(routes: Sequence[BaseRoute] | None = None, **options: Any) -> Starlette:
    """Return a Starlette app with ``SessionMiddleware(**options)``; ``secret_key`` defaults to ``SECRET``."""
    options.setdefault("secret_key", SECRET)
    return Starlette(
        routes=list(demo_routes() if routes is None else routes),
        middleware=[Middleware(SessionMiddleware, **options)],
    )


async def websocket_messages(app: ASGIApp, path: str = "/ws", *, cookie: str | None = None) -> list[Message]:
    """Open a WebSocket to ``app`` with raw ASGI messages; return every message the app sent."""
    headers: list[tuple[bytes, bytes]] = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 123),
        "root_path": "",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": b"",
        "headers": headers,
        "subprotocols": [],
    }
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def websocket_headers(messages: Sequence[Message]) -> list[tuple[bytes, bytes]]:
    """Return the headers of the ``websocket.accept`` message among ``messages``."""
    accept = next(message for message in messages if message["type"] == "websocket.accept")
    return list(accept.get("headers", []))


def websocket_json(messages: Sequence[Message]) -> Any:
    """Return the JSON of the first text frame among ``messages``."""
    text = next(message["text"] for message in messages if message["type"] == "websocket.send")
    return json.loads(text)
