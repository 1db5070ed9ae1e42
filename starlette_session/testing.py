"""Put a session into a test client, and read it back, exactly as the app's middleware would.

For tests of a Starlette or FastAPI app: log a client in without going through the login
form, then check what the app stored. The helpers find the app's ``SessionMiddleware`` and
use its own configuration, so the cookie is signed (or encrypted, or split over chunk
cookies) with the app's keys, and a server-side record is written through the app's own
backend, under the hashed key production uses.

Both kinds of client work: Starlette's (and FastAPI's) ``TestClient``, which is an
``httpx.Client``, and ``httpx.AsyncClient`` over ``httpx.ASGITransport``. The cookies go
into the client's cookie jar, as if a response had set them.

``set_session`` and ``read_session`` are coroutines, for async tests; ``set_session_sync``
and ``read_session_sync`` do the same from a sync test (with a ``TestClient``): they run the
store call in the client's event loop when the client is open (``with TestClient(app) as
client:``), else in a loop of their own.

Nothing here imports ``httpx``: the helpers use the client's cookie jar through the standard
library's ``http.cookiejar`` API, which ``httpx`` and ``httpx2`` (the fork Starlette 1.x's
``TestClient`` is built on) share.
"""

from __future__ import annotations

import email.message
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from http.cookiejar import CookieJar
from typing import Any, Protocol, TypeVar

import anyio.from_thread
from starlette.applications import Starlette

from starlette_session.cookies import CookieSettings, parse_cookies
from starlette_session.exceptions import ConfigurationError
from starlette_session.ids import new_session_id
from starlette_session.middleware import SessionMiddleware
from starlette_session.serializers import JSON
from starlette_session.strategies import CookieStrategy, ServerSideStrategy, _parse_object

__all__ = [
    "Client",
    "find_session_middleware",
    "read_session",
    "read_session_id",
    "read_session_sync",
    "set_session",
    "set_session_sync",
]

T = TypeVar("T")

#: How many ``.app`` links are followed from the app before giving up (a cycle, or no end).
_MAX_DEPTH = 64


def find_session_middleware(app: object, cookie_name: str | None = None) -> SessionMiddleware:
    """Return the ``SessionMiddleware`` instance that serves ``app``'s requests.

    The middleware is looked for from ``app`` inwards, through each layer's ``.app``. A
    Starlette or FastAPI app builds its middleware stack on its first request; if it has not
    been built yet it is built here and kept (as the first request would), so the instance
    returned is the one that serves the requests, and no middleware can be added afterwards.
    Apps mounted inside ``app`` are not searched.

    Args:
        app: the ASGI app given to the client: a ``Starlette`` or ``FastAPI`` app, a
            ``SessionMiddleware``, or middleware wrapping either (with ``.app``).
        cookie_name: choose, among several ``SessionMiddleware``, the one whose cookie has
            this name. Without it, the app must have exactly one.

    Returns:
        The middleware instance.

    Raises:
        ConfigurationError: no ``SessionMiddleware`` was found, none has ``cookie_name``, or
            several were found and ``cookie_name`` was not given.
    """
    found: list[SessionMiddleware] = []
    seen: set[int] = set()
    node: object = app
    for _ in range(_MAX_DEPTH):
        if node is None or id(node) in seen:
            break
        seen.add(id(node))
        if isinstance(node, SessionMiddleware):
            found.append(node)
        if isinstance(node, Starlette):
            if node.middleware_stack is None:
                node.middleware_stack = node.build_middleware_stack()
            node = node.middleware_stack
            continue
        node = getattr(node, "app", None)
    if cookie_name is not None:
        found = [middleware for middleware in found if middleware.cookie.name == cookie_name]
        if not found:
            raise ConfigurationError(
                f"no SessionMiddleware with the cookie {cookie_name!r} found in the app; check the "
                "cookie_name given to the test helper against the middleware's session_cookie"
            )
    if not found:
        raise ConfigurationError(
            f"no starlette_session.SessionMiddleware found in {type(app).__qualname__}: pass the app "
            "the client sends its requests to (the middleware is looked for through each layer's .app)"
        )
    if len(found) > 1:
        names = ", ".join(repr(middleware.cookie.name) for middleware in found)
        raise ConfigurationError(
            f"the app has {len(found)} SessionMiddleware (cookies {names}): pass cookie_name= to choose one"
        )
    return found[0]


# -- the client's cookie jar -----------------------------------------------------------------
# Through the standard library's ``http.cookiejar`` API of ``client.cookies.jar``, which httpx
# and httpx2 (the fork Starlette 1.x's TestClient is built on) share, so that neither one's
# Request and Response classes are needed.


class _Cookies(Protocol):
    jar: CookieJar


class Client(Protocol):
    """What the helpers use of a client: ``httpx.Client``, ``httpx.AsyncClient``, ``TestClient``."""

    @property
    def base_url(self) -> object: ...

    @property
    def cookies(self) -> _Cookies: ...


class _SetCookieResponse:
    """The one method of a response that ``CookieJar.extract_cookies`` calls."""

    def __init__(self, set_cookies: list[str]) -> None:
        self.headers = email.message.Message()
        for value in set_cookies:
            self.headers["Set-Cookie"] = value

    def info(self) -> email.message.Message:
        return self.headers


def _request(client: Client, cookie: CookieSettings) -> urllib.request.Request:
    """A request of ``client`` to the cookie's path: the cookies it carries are the app's."""
    base = urllib.parse.urlsplit(str(client.base_url))
    if not base.hostname:
        raise ConfigurationError(
            "the client has no base_url, so its cookies cannot be matched to the app: create it with "
            "base_url='http://testserver' (TestClient has it already)"
        )
    url = urllib.parse.urlunsplit((base.scheme, base.netloc, cookie.path, "", ""))
    return urllib.request.Request(url)  # noqa: S310 - never opened: only matched against the cookie jar


def _sent_cookies(client: Client, cookie: CookieSettings) -> dict[str, str]:
    """Return the session's cookies (``name`` and its chunks) the client would send the app now."""
    request = _request(client, cookie)
    client.cookies.jar.add_cookie_header(request)
    header = request.get_header("Cookie") or ""
    return parse_cookies([(b"cookie", header.encode("latin-1"))], cookie.name)


def _load_set_cookies(client: Client, cookie: CookieSettings, set_cookies: list[str]) -> None:
    """Put ``set_cookies`` (Set-Cookie header values) into the client's jar, as a response would."""
    response = _SetCookieResponse(set_cookies)
    client.cookies.jar.extract_cookies(response, _request(client, cookie))  # type: ignore[arg-type]


def _check_sent(client: Client, cookie: CookieSettings) -> None:
    """Raise unless the client would send the session cookie back (the jar may have refused it)."""
    if cookie.name in _sent_cookies(client, cookie):
        return
    raise ConfigurationError(
        f"the client would not send the session cookie {cookie.name!r} to {client.base_url}: "
        f"the cookie has domain={cookie.domain!r}, secure={cookie.secure}, max_age={cookie.max_age}. "
        "Give the client a base_url that matches them (https://... for https_only=True, a host within "
        "the domain), and a max_age > 0"
    )


# -- writing and reading -------------------------------------------------------------------


async def _set_cookies_for(
    middleware: SessionMiddleware, client: Client, data: Mapping[str, Any]
) -> tuple[list[str], str | None]:
    """Store ``data`` as the app would; return the Set-Cookie values and the server-side id."""
    strategy = middleware.strategy
    if isinstance(strategy, CookieStrategy):
        carried = strategy.jar.carried_chunks(_sent_cookies(client, middleware.cookie))
        if not data:
            return strategy.jar.clear_headers(carried), None
        value = strategy.codec.encode(JSON.dumps(dict(data)))
        return strategy.jar.set_headers(value, carried), None
    if isinstance(strategy, ServerSideStrategy):
        if not data:
            return [strategy.cookie.clear_header()], None
        public_id = new_session_id(strategy.session_id_bytes)
        # The dict API takes the public id and stores under backend.key_for(it), as a request does.
        await strategy.backend.set(public_id, dict(data), strategy.ttl)
        return [strategy._cookie_for(public_id)], public_id
    raise ConfigurationError(  # pragma: no cover - the middleware only builds these two
        f"unknown session strategy {type(strategy).__qualname__}"
    )


async def set_session(
    client: Client, app: object, data: Mapping[str, Any], *, cookie_name: str | None = None
) -> str | None:
    """Give ``client`` the session ``data``, as if ``app`` had just saved it.

    Cookie sessions: the cookie is signed, or encrypted, with the middleware's keys, and split
    over chunk cookies when too large for one, exactly as the middleware would send it (chunk
    cookies left over from an earlier, larger session are expired). Server-side sessions: a
    record is written through the app's backend under a fresh session id (``backend.set``,
    so under ``backend.key_for(id)``, hashed as in production), with the middleware's TTL, and
    the cookie holds the signed id. The cookies go into the client's jar with the configured
    name, path and domain, as if a response from ``client.base_url`` had set them.

    An empty ``data`` logs the client out: its session cookies are removed (the store is not
    touched).

    Args:
        client: a Starlette or FastAPI ``TestClient``, or an ``httpx.AsyncClient``.
        app: the app the client sends its requests to (see ``find_session_middleware``).
        data: the session, JSON-serializable.
        cookie_name: which ``SessionMiddleware`` to use when the app has several.

    Returns:
        The new session's public id (the one in the cookie) for server-side sessions;
        ``None`` for cookie sessions and for an empty ``data``.

    Raises:
        ConfigurationError: no (single) ``SessionMiddleware`` found, or the client would not send
            the cookie back (its ``base_url`` does not match the cookie's domain or Secure flag).
        SessionTooLargeError: ``data`` does not fit in the cookies the middleware may send.
        TypeError: ``data`` is not JSON-serializable.
        BackendError: the store failed.
    """
    middleware = find_session_middleware(app, cookie_name)
    set_cookies, public_id = await _set_cookies_for(middleware, client, data)
    _load_set_cookies(client, middleware.cookie, set_cookies)
    if data:
        _check_sent(client, middleware.cookie)
    return public_id


def read_session_id(client: Client, app: object, *, cookie_name: str | None = None) -> str | None:
    """Return the server-side session id that ``client``'s cookie carries, if it carries a valid one.

    The id is the public one; the store holds the record under ``backend.key_for(id)``.

    Args:
        client: a Starlette or FastAPI ``TestClient``, or an ``httpx.AsyncClient``.
        app: the app the client sends its requests to.
        cookie_name: which ``SessionMiddleware`` to use when the app has several.

    Returns:
        The id, or ``None`` if the client has no session cookie, or one that is invalid or expired.

    Raises:
        ConfigurationError: no (single) ``SessionMiddleware`` found, or it keeps sessions in
            cookies (they have no id).
    """
    middleware = find_session_middleware(app, cookie_name)
    strategy = middleware.strategy
    if not isinstance(strategy, ServerSideStrategy):
        raise ConfigurationError("the app keeps its sessions in cookies: they have no session id")
    return strategy.session_id_from(_sent_cookies(client, middleware.cookie))


async def read_session(
    client: Client, app: object, *, cookie_name: str | None = None
) -> dict[str, Any] | None:
    """Return the session ``client`` holds for ``app``: what the app would load on its next request.

    Only the cookies the client would send to the cookie's path are read. Cookie sessions:
    the cookie is verified (or decrypted) and its chunks joined. Server-side sessions: the
    signed id is read from the cookie and the record from the app's backend
    (``backend.get(id)``).

    Args:
        client: a Starlette or FastAPI ``TestClient``, or an ``httpx.AsyncClient``.
        app: the app the client sends its requests to.
        cookie_name: which ``SessionMiddleware`` to use when the app has several.

    Returns:
        The session, a new ``dict``; ``None`` when there is none: no session cookie, one that
        is invalid or expired, or (server-side) no record for its id. A session the app
        emptied comes back as ``None``, since the middleware then deletes the cookie.

    Raises:
        ConfigurationError: no (single) ``SessionMiddleware`` found.
        BackendError: the store failed.
    """
    middleware = find_session_middleware(app, cookie_name)
    strategy = middleware.strategy
    cookies = _sent_cookies(client, middleware.cookie)
    if isinstance(strategy, ServerSideStrategy):
        public_id = strategy.session_id_from(cookies)
        return None if public_id is None else await strategy.backend.get(public_id)
    if isinstance(strategy, CookieStrategy):
        value = strategy.jar.read(cookies)
        return _parse_object(None if value is None else strategy.codec.decode(value))
    raise ConfigurationError(  # pragma: no cover - the middleware only builds these two
        f"unknown session strategy {type(strategy).__qualname__}"
    )


# -- sync variants, for Starlette's TestClient -------------------------------------------------


def _run_sync(client: Client, func: Callable[[], Awaitable[T]]) -> T:
    """Run ``func()`` in the client's event loop if it has one open, else in a loop of its own.

    A ``TestClient`` used as a context manager keeps one event loop (its ``portal``) for all
    its requests; running the store call there too lets an asyncio client (``redis.asyncio``)
    be shared with the app. Otherwise, like a ``TestClient`` request outside ``with``, the
    call gets a loop of its own, in another thread, so this works inside a running loop too.
    """
    portal = getattr(client, "portal", None)
    if isinstance(portal, anyio.from_thread.BlockingPortal):
        return portal.call(func)
    options: Mapping[str, Any] = getattr(client, "async_backend", None) or {}
    with anyio.from_thread.start_blocking_portal(**options) as own_portal:
        return own_portal.call(func)


def set_session_sync(
    client: Client, app: object, data: Mapping[str, Any], *, cookie_name: str | None = None
) -> str | None:
    """``set_session`` for sync tests: give ``client`` the session ``data``.

    Arguments, result and errors are those of ``set_session``. Server-side sessions are written
    in the ``TestClient``'s event loop when it is open (``with TestClient(app) as client:``),
    else in a short-lived loop of their own.

    Args:
        client: a Starlette or FastAPI ``TestClient`` (or any ``httpx`` client).
        app: the app the client sends its requests to.
        data: the session, JSON-serializable; empty to log the client out.
        cookie_name: which ``SessionMiddleware`` to use when the app has several.

    Returns:
        The new session's public id for server-side sessions, else ``None``.
    """
    return _run_sync(client, lambda: set_session(client, app, data, cookie_name=cookie_name))


def read_session_sync(
    client: Client, app: object, *, cookie_name: str | None = None
) -> dict[str, Any] | None:
    """``read_session`` for sync tests: the session ``client`` holds for ``app``, or ``None``.

    Arguments, result and errors are those of ``read_session``; the store is read as
    ``set_session_sync`` writes it.

    Args:
        client: a Starlette or FastAPI ``TestClient`` (or any ``httpx`` client).
        app: the app the client sends its requests to.
        cookie_name: which ``SessionMiddleware`` to use when the app has several.

    Returns:
        The session, or ``None`` when the client holds none.
    """
    return _run_sync(client, lambda: read_session(client, app, cookie_name=cookie_name))
