"""Where the session data lives: in the cookie, or in a store with only its id in the cookie.

The middleware holds one strategy, picked at construction, and never asks which it has.
A strategy loads the session from the request's cookies, and at response start returns the
Set-Cookie header values to send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from starlette_session.cookies import DEFAULT_MAX_COOKIE_SIZE, CookieJar, CookieSettings
from starlette_session.exceptions import BackendError, StarletteSessionError
from starlette_session.expiry import ttl_seconds
from starlette_session.ids import is_valid_session_id, new_session_id
from starlette_session.interfaces import ISessionBackend, SessionBackend
from starlette_session.serializers import JSON
from starlette_session.session import Session
from starlette_session.signing import CookieCodec

#: The cookie of a server-side session holds ``{"_cssid": id}``, as in starlette-session 0.4.3.
SESSION_ID_FIELD = "_cssid"


@dataclass
class Loaded:
    """What a strategy learned from the request, kept until the response starts."""

    session: Session
    #: A valid session cookie came with the request (Starlette's ``not initial_session_was_empty``).
    had_cookie: bool = False
    #: The server-side id of the loaded record; ``None`` for a new session or cookie sessions.
    session_id: str | None = None
    #: Cookie sessions: the chunk cookies (``<name>.<n>``) the request carried, so that a save
    #: can expire those it leaves stale.
    chunks: tuple[str, ...] = ()


class Strategy(Protocol):
    """Loads the session before the app runs and saves it when the response starts."""

    async def load(self, cookies: dict[str, str]) -> Loaded: ...

    async def save(self, loaded: Loaded, session: Session, rolling: bool) -> list[str]:
        """Persist ``session`` if needed and return the Set-Cookie header values to send."""
        ...


def _parse_object(payload: bytes | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    try:
        return JSON.loads(payload)
    except ValueError:
        return None


class CookieStrategy:
    """The session data is the cookie: ``codec.encode(JSON)`` (Starlette's format by default).

    A value too long for one cookie is split over numbered cookies by ``CookieJar``; one
    over ``max_cookie_size`` raises ``SessionTooLargeError`` when the response starts.

    Args:
        codec: signs (``SignedCodec``) or encrypts (``EncryptedCodec``) the JSON.
        cookie: the cookie's name and attributes.
        split_cookies: split a session whose Set-Cookie line would pass 4096 bytes.
        max_cookie_size: the most bytes the session's cookies may add to a request's Cookie header.

    Raises:
        ConfigurationError: an invalid ``max_cookie_size``.
    """

    def __init__(
        self,
        codec: CookieCodec,
        cookie: CookieSettings,
        *,
        split_cookies: bool = True,
        max_cookie_size: int = DEFAULT_MAX_COOKIE_SIZE,
    ) -> None:
        self.codec = codec
        self.cookie = cookie
        self.jar = CookieJar(cookie, split=split_cookies, max_size=max_cookie_size)

    async def load(self, cookies: dict[str, str]) -> Loaded:
        chunks = self.jar.carried_chunks(cookies) if self.jar.split else ()
        value = self.jar.read(cookies)
        if value is None:
            return Loaded(Session(), chunks=chunks)
        payload = self.codec.decode(value)
        data = _parse_object(payload)
        if data is None:
            return Loaded(Session(), chunks=chunks)
        session = Session(data)
        session.loaded = payload
        return Loaded(session, had_cookie=True, chunks=chunks)

    async def save(self, loaded: Loaded, session: Session, rolling: bool) -> list[str]:
        payload = session.dump_if_changed()
        if payload is not None:
            if dict.__len__(session):
                return self.jar.set_headers(self.codec.encode(payload), loaded.chunks)
            if loaded.had_cookie or loaded.chunks:
                return self.jar.clear_headers(loaded.chunks)
            return []
        if rolling and loaded.had_cookie and session.loaded is not None and dict.__len__(session):
            return self.jar.set_headers(self.codec.encode(session.loaded), loaded.chunks)
        return []


class DictBackendAdapter(SessionBackend):
    """Presents a 0.4.3-style ``ISessionBackend`` (dicts) as a byte store.

    Errors the user's backend raises become ``BackendError`` so that a store outage is never
    mistaken for a missing session.
    """

    def __init__(self, backend: ISessionBackend) -> None:
        self.backend = backend

    def _fail(self, operation: str, exc: Exception) -> BackendError:
        name = type(self.backend).__qualname__
        return BackendError(f"session backend {name}.{operation}() failed: {exc!r}")

    async def read(self, session_id: str) -> bytes | None:
        try:
            value = await self.backend.get(session_id)
        except StarletteSessionError:
            raise
        except Exception as exc:
            raise self._fail("get", exc) from exc
        if not value or not isinstance(value, dict):
            return None
        return JSON.dumps(value)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        try:
            await self.backend.set(session_id, JSON.loads(data), ttl)
        except StarletteSessionError:
            raise
        except Exception as exc:
            raise self._fail("set", exc) from exc

    async def remove(self, session_id: str) -> None:
        try:
            await self.backend.delete(session_id)
        except StarletteSessionError:
            raise
        except Exception as exc:
            raise self._fail("delete", exc) from exc


class ServerSideStrategy:
    """The data lives in ``backend``; the cookie holds the signed ``{"_cssid": id}``.

    An id is only ever created here, from ``secrets``: a cookie naming an id the store does
    not know gives an empty session, and its next write gets a new id.
    """

    def __init__(
        self,
        backend: SessionBackend,
        codec: CookieCodec,
        cookie: CookieSettings,
        *,
        session_id_bytes: int,
        fallback_ttl: int,
    ) -> None:
        self.backend = backend
        self.codec = codec
        self.cookie = cookie
        self.session_id_bytes = session_id_bytes
        self.ttl = ttl_seconds(cookie.max_age, fallback_ttl)

    def session_id_from(self, cookies: dict[str, str]) -> str | None:
        """Return the valid session id named by the request's cookie, if any."""
        value = cookies.get(self.cookie.name)
        if value is None:
            return None
        data = _parse_object(self.codec.decode(value))
        if data is None:
            return None
        session_id = data.get(SESSION_ID_FIELD)
        return session_id if is_valid_session_id(session_id) else None

    async def load(self, cookies: dict[str, str]) -> Loaded:
        session_id = self.session_id_from(cookies)
        if session_id is None:
            return Loaded(Session())
        payload = await self.backend.read(session_id)
        data = _parse_object(payload)
        if data is None:
            # Unknown, expired or unreadable record: start afresh, never adopt the id.
            return Loaded(Session(), had_cookie=True)
        session = Session(data)
        session.loaded = payload
        return Loaded(session, had_cookie=True, session_id=session_id)

    def _cookie_for(self, session_id: str) -> str:
        payload = json.dumps({SESSION_ID_FIELD: session_id}).encode("utf-8")
        return self.cookie.set_header(self.codec.encode(payload))

    async def save(self, loaded: Loaded, session: Session, rolling: bool) -> list[str]:
        """Persist the session; afterwards ``loaded`` and ``session`` describe what is stored,
        so a later call (a WebSocket's end) saves only what changed since."""
        session_id = loaded.session_id
        if session.regenerate and session_id is not None:
            await self.backend.remove(session_id)
            session_id = None
        payload = session.dump_if_changed()
        if payload is not None:
            if dict.__len__(session):
                if session_id is None:
                    session_id = new_session_id(self.session_id_bytes)
                await self.backend.write(session_id, payload, self.ttl)
                loaded.session_id = session_id
                session.mark_saved(payload)
                return [self._cookie_for(session_id)]
            if session_id is not None:
                await self.backend.remove(session_id)
            loaded.session_id = None
            session.mark_saved(None)
            return [self.cookie.clear_header()] if loaded.had_cookie else []
        if (
            rolling
            and session_id is not None
            and dict.__len__(session)
            and await self.backend.touch(session_id, self.ttl)
        ):
            return [self._cookie_for(session_id)]
        return []
