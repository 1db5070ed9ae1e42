"""``SessionMiddleware``: configuration, then load before the app and save at response start.

Pure ASGI. One constructor accepts both Starlette's keywords and starlette-session 0.4.3's.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from starlette_session import users
from starlette_session.backends import BackendType, backend_for_client, create_backend
from starlette_session.backends.base import DictBackendAdapter, SessionBackend, has_capability
from starlette_session.cookies import DEFAULT_MAX_COOKIE_SIZE, CookieSettings, parse_cookies
from starlette_session.encryption import EncryptedCodec, EncryptionKey, normalize_encryption_keys
from starlette_session.events import Observer, SessionEvent, emit
from starlette_session.exceptions import BackendError, ConfigurationError
from starlette_session.expiry import DEFAULT_FALLBACK_TTL
from starlette_session.ids import DEFAULT_ID_BYTES
from starlette_session.interfaces import ISessionBackend
from starlette_session.outage import (
    DEFAULT_BREAKER_COOLDOWN,
    DEFAULT_BREAKER_THRESHOLD,
    DEFAULT_STORE_TIMEOUT,
    StoreGuard,
    service_unavailable,
)
from starlette_session.session import Session, _current
from starlette_session.signing import CookieCodec, SecretKey, SignedCodec, normalize_secret_keys
from starlette_session.strategies import (
    DEFAULT_LAST_SEEN_INTERVAL,
    CookieStrategy,
    Loaded,
    ServerSideStrategy,
    Strategy,
)

logger = logging.getLogger("starlette_session")

#: ``on_backend_error``: given the connection and the error, returns the ASGI app (usually a
#: ``Response``) that answers instead, or ``None`` to go on with an empty, never-saved session.
BackendErrorHook: TypeAlias = Callable[
    [HTTPConnection, BackendError], "ASGIApp | Awaitable[ASGIApp | None] | None"
]

_exempt_endpoints_exist = False
_START = {"http": "http.response.start", "websocket": "websocket.accept"}
_EXEMPT_ATTRIBUTE = "__starlette_session_exempt__"

F = TypeVar("F", bound=Callable[..., Any])


def session_exempt(endpoint: F) -> F:
    """Mark a route endpoint so that ``SessionMiddleware`` skips requests routed to it."""
    global _exempt_endpoints_exist  # noqa: PLW0603 - lets every request skip route matching until used
    setattr(endpoint, _EXEMPT_ATTRIBUTE, True)
    _exempt_endpoints_exist = True
    return endpoint


class SessionMiddleware:
    """Sessions for Starlette and FastAPI.

    A drop-in for ``starlette.middleware.sessions.SessionMiddleware`` (same keywords, same
    cookies) that also takes starlette-session 0.4.3's keywords and stores sessions
    server-side when given a backend.

    Args:
        app: the ASGI app.
        secret_key: the signing key, or a list of keys whose first signs and all verify.
        session_cookie: the cookie's name (0.4.3: ``cookie_name``).
        max_age: the cookie's Max-Age and the store TTL in seconds; ``None`` for a cookie that
            ends with the browser session (the store then keeps it for ``fallback_ttl``).
        path: the cookie's Path.
        same_site: the cookie's SameSite: "lax", "strict" or "none".
        https_only: send the cookie with Secure (only over HTTPS).
        domain: the cookie's Domain; ``None`` for the host that set it.
        partitioned: send the cookie with Partitioned (CHIPS; needs SameSite=None and Secure).
        cookie_name: 0.4.3's name for ``session_cookie``.
        backend_type: a ``BackendType`` (or its value) to build from ``backend_client``.
        backend_client: the store's client (a ``redis.Redis``, an ``Engine``, a directory...).
            Given without ``backend_type``, the backend is chosen from the client's type.
        custom_session_backend: your own ``ISessionBackend`` (0.4.3), or any shipped backend.
        backend: the same as ``custom_session_backend``.
        httponly: send the cookie with HttpOnly (default on).
        rolling: renew the cookie and the store's expiry on every request that has a session.
        exclude: regular expressions; requests whose path matches one (from its start) skip
            the middleware.
        scopes: which ASGI connection types get a session: "http", "websocket" or both.
        session_id_bytes: bytes of randomness in a server-side session id (at least 16).
        fallback_ttl: the store TTL when ``max_age`` is ``None``.
        encryption_key: encrypt cookie sessions with AES-GCM (extra ``cryptography``): a key of
            16, 24 or 32 bytes, or urlsafe base64 text of one, or a list whose first key
            encrypts and all decrypt. Cookie sessions only.
        max_cookie_size: cookie sessions: the most bytes the session's cookies may add to a
            request's Cookie header; past it, ``SessionTooLargeError`` at response start.
        split_cookies: cookie sessions: split a session too large for one 4096-byte cookie
            over numbered cookies (``<name>.1``...); if ``False``, raise instead.
        concurrency: server-side sessions: ``"last-write-wins"`` (a save replaces the record)
            or ``"merge"`` (a save applies the keys this request changed to the record as it
            is now, by compare-and-swap, so concurrent requests lose no update).
        on_backend_error: called as ``hook(connection, error)`` (may be async) when the store
            fails; return a ``Response`` to send it, or ``None`` to serve the request with an
            empty session that is never saved. Without it: 503 with ``Retry-After``.
        store_timeout: seconds each store call may take (``None``: unbounded).
        breaker_threshold: consecutive store failures after which requests get the outage
            answer at once, without calling the store, for ``breaker_cooldown`` seconds (0: never).
        breaker_cooldown: seconds between probes of a failing store.
        hash_ids: store each record under the SHA-256 of its session id, so the store holds no
            id a cookie could carry. Default: on for the shipped backends, off for 0.4.3-style
            ``ISessionBackend``s (which see the id as in 0.4.3). ``False`` keeps raw keys, for a
            store shared with starlette-session 0.4.3 or 1.0 during a rollout.
        raw_id_fallback: with ``hash_ids``, look a session up under its raw id when the hashed
            key misses (records written before ids were hashed); its next save moves it.
        legacy_043: read sessions that starlette-session 0.4.3 stored in Redis or memcached
            (pickled, under the bare id) through an unpickler that refuses every global; each
            moves to this package's JSON record on its next save.
        user_key: index every saved session under ``str(session[user_key])``, so a user's
            sessions can be listed and revoked (``backend.list_user_sessions``,
            ``starlette_session.users``). Server-side backends only.
        track_client: with ``user_key``, keep each session's User-Agent and client address.
        absolute_max_age: seconds a server-side session lives from its creation, however
            active it is (``max_age``/``rolling`` stay the idle timeout).
        last_seen_interval: with ``user_key``, the least seconds between two refreshes of a
            session's last-seen time by requests that only read it.
        events: called with a ``starlette_session.events.SessionEvent`` for each lifecycle
            event and store call; an error it raises is logged, never raised.

    Raises:
        ConfigurationError: any invalid argument, with the way to fix it.
        UnknownPredefinedBackend: ``backend_type`` names no backend.
        MissingDependencyError: the backend's library is not installed.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: SecretKey | Sequence[SecretKey],
        session_cookie: str | None = None,
        max_age: int | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        cookie_name: str | None = None,
        backend_type: BackendType | str | None = None,
        backend_client: Any = None,
        custom_session_backend: ISessionBackend | None = None,
        backend: ISessionBackend | None = None,
        httponly: bool = True,
        rolling: bool = False,
        exclude: Sequence[str | re.Pattern[str]] = (),
        scopes: Collection[Literal["http", "websocket"]] = ("http", "websocket"),
        session_id_bytes: int = DEFAULT_ID_BYTES,
        fallback_ttl: int = DEFAULT_FALLBACK_TTL,
        encryption_key: EncryptionKey | Sequence[EncryptionKey] | None = None,
        max_cookie_size: int = DEFAULT_MAX_COOKIE_SIZE,
        split_cookies: bool = True,
        concurrency: Literal["last-write-wins", "merge"] = "last-write-wins",
        on_backend_error: BackendErrorHook | None = None,
        store_timeout: float | None = DEFAULT_STORE_TIMEOUT,
        breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        hash_ids: bool | None = None,
        raw_id_fallback: bool = True,
        legacy_043: bool = False,
        user_key: str | None = None,
        track_client: bool = False,
        absolute_max_age: int | None = None,
        last_seen_interval: float = DEFAULT_LAST_SEEN_INTERVAL,
        events: Observer | None = None,
    ) -> None:
        self.app = app
        if session_cookie is not None and cookie_name is not None:
            raise ConfigurationError(
                "pass the cookie name once: session_cookie= (Starlette) or cookie_name= (0.4.3), not both"
            )
        path, same_site = _same_site_by_position(path, same_site, https_only, domain, partitioned)
        self.cookie = CookieSettings(
            name=session_cookie or cookie_name or "session",
            path=path,
            max_age=max_age,
            same_site=same_site,
            secure=https_only,
            domain=domain,
            partitioned=partitioned,
            httponly=httponly,
        )
        unknown_scopes = set(scopes) - set(_START)
        if unknown_scopes or not scopes:
            raise ConfigurationError(f"invalid scopes {scopes!r}: use 'http', 'websocket' or both")
        self.starts = {scope_type: _START[scope_type] for scope_type in scopes}
        if session_id_bytes < 16:
            raise ConfigurationError("session_id_bytes must be at least 16 (128 bits); the default is 32")
        if fallback_ttl < 1:
            raise ConfigurationError("fallback_ttl must be a number of seconds >= 1")
        if concurrency not in ("last-write-wins", "merge"):
            raise ConfigurationError(
                f"invalid concurrency={concurrency!r}: use 'last-write-wins' (the default) or 'merge'"
            )
        self.rolling = rolling
        self.on_backend_error = on_backend_error
        self.exclude = _compile_patterns(exclude)
        codec = SignedCodec(normalize_secret_keys(secret_key), max_age)
        if custom_session_backend is not None and backend is not None:
            raise ConfigurationError(
                "pass the backend once: custom_session_backend= (0.4.3) or backend=, not both"
            )
        # ``is not None``, not ``or``: a backend with ``__len__`` (MemoryBackend) is falsy when empty.
        custom = custom_session_backend if custom_session_backend is not None else backend
        store = _pick_backend(backend_type, backend_client, custom)
        self.backend = store
        cookie_codec: CookieCodec = codec
        if encryption_key is not None:
            if store is not None:
                raise ConfigurationError(
                    "encryption_key encrypts cookie sessions only: with a backend the cookie holds just a "
                    "random session id and the data stays in the store. Drop encryption_key or the backend"
                )
            keys = normalize_encryption_keys(encryption_key)
            cookie_codec = EncryptedCodec(keys, max_age, self.cookie.name)
        if store is not None:
            if hash_ids is not None:
                store.hash_ids = hash_ids
            store.raw_id_fallback = raw_id_fallback
        _check_user_options(store, user_key, absolute_max_age, last_seen_interval)
        if events is not None and (not callable(events) or inspect.iscoroutinefunction(events)):
            raise ConfigurationError(
                "events= takes a plain callable receiving each SessionEvent, not an async function "
                "(it would never be awaited); hand events to a queue or a task from a plain function"
            )
        if legacy_043 and (store is None or not has_capability(store, "read_043")):
            raise ConfigurationError(
                "legacy_043=True reads starlette-session 0.4.3's records, which only its Redis and "
                "memcached backends wrote; use it with BackendType.redis, aioRedis, memcache or aioMemcache"
            )
        self.guard = StoreGuard(
            "cookie" if store is None else store.name,
            timeout=store_timeout,
            threshold=breaker_threshold,
            cooldown=breaker_cooldown,
        )
        if concurrency == "merge":
            if store is None:
                raise ConfigurationError(
                    "concurrency='merge' needs a server-side backend: cookie sessions are whole values "
                    "that the browser keeps, with no store to merge into"
                )
            if not has_capability(store, "compare_and_swap"):
                raise ConfigurationError(
                    f"concurrency='merge' needs a backend with compare_and_swap (and read_for_update); "
                    f"{type(store).__qualname__} has none. Use a shipped backend, implement both on a "
                    "SessionBackend subclass, or keep the default concurrency='last-write-wins'"
                )
        self.strategy: Strategy = (
            CookieStrategy(
                cookie_codec, self.cookie, split_cookies=split_cookies, max_cookie_size=max_cookie_size
            )
            if store is None
            else ServerSideStrategy(
                store,
                codec,
                self.cookie,
                session_id_bytes=session_id_bytes,
                fallback_ttl=fallback_ttl,
                guard=self.guard,
                merge=concurrency == "merge",
                legacy_043=legacy_043,
                user_key=user_key,
                track_client=track_client,
                absolute_max_age=absolute_max_age,
                last_seen_interval=last_seen_interval,
                events=events,
            )
        )
        self.guard.observer = events
        self.events = events
        self.track_client = track_client and store is not None
        self.indexes_users = user_key is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = self.starts.get(scope["type"])
        if start is None or (
            (self.exclude is not None and self.exclude.match(scope["path"]))
            or (_exempt_endpoints_exist and _routes_to_exempt_endpoint(scope, self.app))
        ):
            if scope["type"] == "lifespan" and self.backend is not None:
                send = self._closing_backend_on_shutdown(send)
            await self.app(scope, receive, send)
            return

        cookies = parse_cookies(scope["headers"], self.cookie.name)
        fail_open = False
        try:
            loaded = await self.strategy.load(cookies) if cookies else None
        except BackendError as exc:
            answer = await self._store_failed(scope, exc)
            if answer is not None:
                await answer(scope, receive, send)
                return
            loaded, fail_open = None, True  # the app chose to serve this request without its session
        scope["session"] = initial = Session() if loaded is None else loaded.session
        token = _current.set(initial)
        if loaded is None and (self.track_client or self.indexes_users):
            loaded = Loaded(initial)
        if self.track_client and loaded is not None:
            loaded.client = _client_of(scope)
        users_token = (
            users._request.set((self.strategy, loaded))  # type: ignore[arg-type]  # server-side only
            if self.indexes_users
            else None
        )
        rolling = self.rolling and loaded is not None and loaded.had_cookie
        saved: Loaded | None = None
        replaced = False  # the app's response was replaced by the outage answer

        async def send_wrapper(message: Message) -> None:
            nonlocal saved, replaced
            if replaced:
                return
            if message["type"] != start:
                await send(message)
                return
            # From now on no cookie can reach the client: regenerate_session() refuses.
            initial.response_started = True
            if not fail_open:
                session = scope["session"]
                saved = Loaded(initial) if loaded is None else loaded
                if not isinstance(session, Session):  # the app replaced it with a plain dict
                    session = scope["session"] = Session(session)
                    session.mark_modified()
                session.response_started = True
                if not session.accessed and not rolling:  # untouched: nothing to save or vary
                    await send(message)
                    return
                try:
                    set_cookies = await self.strategy.save(saved, session, self.rolling)
                except BackendError as exc:
                    answer = await self._store_failed(scope, exc)
                    if answer is not None:
                        replaced = True
                        await answer(scope, receive, send)
                        return
                    set_cookies = []  # the app chose to send its response without saving
                if session.accessed or set_cookies:
                    # A response that sets a cookie varies by cookie too (rolling renewal).
                    _vary_by_cookie(message, set_cookies)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
            if saved is not None and not replaced:
                await self._save_late(saved, scope["session"])
        finally:
            _current.reset(token)
            if users_token is not None:
                users._request.reset(users_token)

    async def _save_late(self, saved: Loaded, session: object) -> None:
        """Store what the app changed after the response (or WebSocket) started, if it can be."""
        if not isinstance(session, Session) or not (
            session.modified or session.regenerate or session.exposed
        ):
            return
        if session.dump_if_changed() is None:
            return
        if not self.strategy.can_save_late(saved):
            logger.warning(
                "session changed after the response started, and the change is lost: %s. Change the "
                "session before returning the response (before a StreamingResponse's body is produced, "
                "before a WebSocket is accepted)",
                "a new or cookie session can only reach the client in a Set-Cookie header, which was "
                "already sent",
            )
            return
        if session.regenerate:
            logger.warning(
                "regenerate_session() was called after the response started: no new session id can reach "
                "the client now, so the session keeps its id"
            )
            session.regenerate = False
        try:
            await self.strategy.save(saved, session, False)
        except BackendError as exc:
            logger.error("%s (the change made after the response started is lost)", exc)

    async def _store_failed(self, scope: Scope, exc: BackendError) -> ASGIApp | None:
        """Log a store failure and return the ASGI app that answers instead, or ``None`` (fail open)."""
        logger.error("%s", exc)
        emit(
            self.events,
            SessionEvent(
                "store_error", self.guard.backend_name, operation=exc.operation or None, error=str(exc)
            ),
        )
        default: ASGIApp = (
            WebSocketClose(code=1013, reason="session store unavailable")
            if scope["type"] == "websocket"
            else service_unavailable(self.guard.retry_after)
        )
        if self.on_backend_error is None:
            return default
        try:
            answer = self.on_backend_error(HTTPConnection(scope), exc)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception:
            logger.exception("on_backend_error raised; answering with the default outage response")
            return default
        if answer is None:
            return None
        if scope["type"] == "websocket" and isinstance(answer, Response):
            return default  # an HTTP response cannot answer a WebSocket
        return answer

    def _closing_backend_on_shutdown(self, send: Send) -> Send:
        """Wrap the lifespan ``send`` so the backend releases what it created when the app stops."""
        backend = self.backend
        if backend is None:  # pragma: no cover - only called with a backend
            return send

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await backend.aclose()
            await send(message)

        return send_wrapper


def _vary_by_cookie(message: Message, set_cookies: list[str]) -> None:
    """Add ``Vary: Cookie`` (to an existing ``Vary``, as Starlette's ``add_vary_header`` does) and
    the ``Set-Cookie`` headers to a response start message."""
    headers = message["headers"] = list(message.get("headers", ()))
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            headers[index] = (name, value + b", Cookie")
            break
    else:
        headers.append((b"vary", b"Cookie"))
    for set_cookie in set_cookies:
        headers.append((b"set-cookie", set_cookie.encode("latin-1")))


def _same_site_by_position(
    path: str,
    same_site: Literal["lax", "strict", "none"],
    https_only: bool,
    domain: str | None,
    partitioned: bool,
) -> tuple[str, Literal["lax", "strict", "none"]]:
    """Return ``(path, same_site)``, reading a 0.4.3-style positional ``same_site`` in the ``path`` slot.

    starlette-session 0.4.3 takes ``(app, secret_key, cookie_name, max_age, same_site, https_only,
    domain, ...)``; Starlette, and this class, take ``path`` where 0.4.3 takes ``same_site``. No
    path can be "lax", "strict" or "none" (a path starts with "/"), so such a value there is
    0.4.3's ``same_site``. It is taken as such when nothing was passed after it (so nothing
    shifted by one place is lost), and refused otherwise.

    Raises:
        ConfigurationError: a same-site value in the ``path`` slot, with other arguments after it.
    """
    if not isinstance(path, str) or path.lower() not in ("lax", "strict", "none"):
        return path, same_site
    if same_site == "lax" and https_only is False and domain is None and partitioned is False:
        return "/", path  # type: ignore[return-value]  # checked just above
    raise ConfigurationError(
        f"path={path!r} looks like starlette-session 0.4.3's same_site passed by position: 0.4.3 takes "
        "same_site fifth, where Starlette and this package take path. Pass it by keyword, "
        f"same_site={path.lower()!r}, and https_only=, domain= by keyword too"
    )


def _check_user_options(
    store: SessionBackend | None,
    user_key: str | None,
    absolute_max_age: int | None,
    last_seen_interval: float,
) -> None:
    if user_key is not None:
        if not isinstance(user_key, str) or not user_key:
            raise ConfigurationError(
                f"user_key={user_key!r} must be the name of a session key, such as 'user_id'"
            )
        if store is None:
            raise ConfigurationError(
                "user_key needs a server-side backend: cookie sessions live in each browser, so the "
                "server cannot list or revoke them. Pass backend_client= or backend="
            )
        if not has_capability(store, "compare_and_swap"):
            raise ConfigurationError(
                f"user_key keeps a per-user index by compare-and-swap, which {type(store).__qualname__} "
                "lacks; use a shipped backend, or implement read_for_update and compare_and_swap"
            )
        if not store.hash_ids:
            raise ConfigurationError(
                "user_key lists sessions by their store key, which with hash_ids=False is the session id "
                "itself (a credential); keep hash_ids on"
            )
    if absolute_max_age is not None:
        if (
            not isinstance(absolute_max_age, int)
            or isinstance(absolute_max_age, bool)
            or absolute_max_age < 1
        ):
            raise ConfigurationError(
                f"absolute_max_age={absolute_max_age!r} must be a number of seconds >= 1"
            )
        if store is None:
            raise ConfigurationError(
                "absolute_max_age needs a server-side backend: a cookie session's creation time would "
                "have to travel in the cookie, which keeps Starlette's format. Use a backend, or a "
                "short max_age without rolling"
            )
    if not last_seen_interval >= 0:
        raise ConfigurationError(
            f"last_seen_interval={last_seen_interval!r} must be a number of seconds >= 0"
        )


def _client_of(scope: Scope) -> tuple[str | None, str | None]:
    """The request's User-Agent and client address, for ``track_client``."""
    user_agent = None
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
            break
    client = scope.get("client")
    return user_agent, None if not client else str(client[0])


def _compile_patterns(patterns: Sequence[str | re.Pattern[str]]) -> re.Pattern[str] | None:
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        return None
    sources = []
    for pattern in patterns:
        source = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        try:
            re.compile(source)
        except re.error as exc:
            raise ConfigurationError(f"invalid exclude pattern {source!r}: {exc}") from None
        sources.append(f"(?:{source})")
    return re.compile("|".join(sources))


def _routes_to_exempt_endpoint(scope: Scope, inner: ASGIApp) -> bool:
    """Return whether the app's router sends this request to a ``@session_exempt`` endpoint."""
    # scope["app"] is set by Starlette before its middleware stack; when the middleware wraps
    # the app from outside (``app = SessionMiddleware(app, ...)``) it is not set yet.
    router = getattr(scope.get("app"), "router", None) or _find_router(inner)
    return _exempt_in(getattr(router, "routes", ()), scope)


def _exempt_in(routes: Sequence[Any], scope: Scope) -> bool:
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            endpoint = child_scope.get("endpoint", getattr(route, "endpoint", None))
            if endpoint is None and hasattr(route, "routes"):  # a Mount: look inside it
                return _exempt_in(route.routes, {**scope, **child_scope})
            return bool(getattr(endpoint, _EXEMPT_ATTRIBUTE, False))
    return False


def _find_router(app: object) -> object | None:
    """Return the router of ``app``, looking through the middleware that wraps it (``.app``)."""
    for _ in range(32):
        router: object = getattr(app, "router", None)
        if router is not None:
            return router
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _pick_backend(
    backend_type: BackendType | str | None, client: Any, custom: object
) -> SessionBackend | None:
    if custom is not None:
        if backend_type is not None or client is not None:
            raise ConfigurationError(
                "pass either custom_session_backend (or backend) or backend_type/backend_client, not both"
            )
        if isinstance(custom, SessionBackend):
            return custom
        if not isinstance(custom, ISessionBackend) and not all(
            callable(getattr(custom, name, None)) for name in ("get", "set", "delete")
        ):
            raise ConfigurationError(
                "custom_session_backend must implement ISessionBackend (async get, set and delete)"
            )
        return DictBackendAdapter(custom)  # type: ignore[arg-type]  # duck-typed 0.4.3 backends too
    if backend_type is None:
        return None if client is None else backend_for_client(client)
    return create_backend(backend_type, client)
