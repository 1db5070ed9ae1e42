"""Where the session data lives: in the cookie, or in a store with only its id in the cookie.

The middleware holds one strategy, picked at construction, and never asks which it has.
A strategy loads the session from the request's cookies, and at response start returns the
Set-Cookie header values to send.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from starlette_session.cookies import DEFAULT_MAX_COOKIE_SIZE, CookieJar, CookieSettings
from starlette_session.exceptions import BackendError, SessionConflictError
from starlette_session.expiry import ttl_seconds
from starlette_session.ids import is_private_id, is_valid_session_id, new_session_id
from starlette_session.serializers import JSON
from starlette_session.session import Session
from starlette_session.signing import CookieCodec

if TYPE_CHECKING:
    from starlette_session.backends.base import SessionBackend
    from starlette_session.outage import StoreGuard

logger = logging.getLogger("starlette_session")

#: The cookie of a server-side session holds ``{"_cssid": id}``, as in starlette-session 0.4.3.
SESSION_ID_FIELD = "_cssid"
#: Fresh ids tried before ``create`` is taken to be broken (a collision of 256-bit ids never happens).
_CREATE_ATTEMPTS = 3
#: Compare-and-swap attempts of one merge-mode save before ``SessionConflictError``.
DEFAULT_MERGE_ATTEMPTS = 32


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
    #: Merge mode: the version token of the loaded record, for ``compare_and_swap``.
    version: Any = None
    #: The record was found under an older key form (the raw id, or 0.4.3's record, ``"043"``);
    #: its next save moves it to the hashed key.
    legacy: str | None = None


class Strategy(Protocol):
    """Loads the session before the app runs and saves it when the response starts."""

    async def load(self, cookies: dict[str, str]) -> Loaded: ...

    async def save(self, loaded: Loaded, session: Session, rolling: bool) -> list[str]:
        """Persist ``session`` if needed and return the Set-Cookie header values to send.

        Afterwards ``session`` is marked saved, so changes made later are detectable.
        """
        ...

    def can_save_late(self, loaded: Loaded) -> bool:
        """Whether changes made after the response started can still be stored."""
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

    def can_save_late(self, loaded: Loaded) -> bool:
        """Never: the data is the cookie, and the response's headers are gone."""
        return False

    async def save(self, loaded: Loaded, session: Session, rolling: bool) -> list[str]:
        payload = session.dump_if_changed()
        if payload is not None:
            session.mark_saved(payload)
            if dict.__len__(session):
                return self.jar.set_headers(self.codec.encode(payload), loaded.chunks)
            if loaded.had_cookie or loaded.chunks:
                return self.jar.clear_headers(loaded.chunks)
            return []
        if rolling and loaded.had_cookie and session.loaded is not None and dict.__len__(session):
            return self.jar.set_headers(self.codec.encode(session.loaded), loaded.chunks)
        return []


class ServerSideStrategy:
    """The data lives in ``backend``; the cookie holds the signed ``{"_cssid": id}``.

    An id is only ever created here, from ``secrets``: a cookie naming an id the store does
    not know gives an empty session, and its next write gets a new id. The store sees the
    key ``backend.key_for(id)`` (a hash by default). A new session is stored with ``create``,
    a loaded one with ``replace`` (or, with ``merge``, by compare-and-swap of the changed keys
    onto the record as it is now): a record that a logout, a regeneration, a revoke or an
    expiry removed while the request ran stays removed, the request's changes are dropped
    with one warning, and no cookie names the old id again. A record found under an older
    key (the raw id, or with ``legacy_043`` a starlette-session 0.4.3 record) is moved to the
    hashed key by its next save. Every store call runs through ``guard`` (timeout and breaker).
    """

    def __init__(
        self,
        backend: SessionBackend,
        codec: CookieCodec,
        cookie: CookieSettings,
        *,
        session_id_bytes: int,
        fallback_ttl: int,
        guard: StoreGuard,
        merge: bool = False,
        merge_attempts: int = DEFAULT_MERGE_ATTEMPTS,
        legacy_043: bool = False,
    ) -> None:
        self.backend = backend
        self.codec = codec
        self.cookie = cookie
        self.session_id_bytes = session_id_bytes
        self.ttl = ttl_seconds(cookie.max_age, fallback_ttl)
        self.guard = guard
        self.merge = merge
        self.merge_attempts = merge_attempts
        self.legacy_043 = legacy_043

    def session_id_from(self, cookies: dict[str, str]) -> str | None:
        """Return the valid public session id named by the request's cookie, if any."""
        value = cookies.get(self.cookie.name)
        if value is None:
            return None
        data = _parse_object(self.codec.decode(value))
        if data is None:
            return None
        session_id = data.get(SESSION_ID_FIELD)
        # A private id (a store key) is never taken from a cookie.
        if not is_valid_session_id(session_id) or is_private_id(session_id):
            return None
        return str(session_id)

    async def load(self, cookies: dict[str, str]) -> Loaded:
        session_id = self.session_id_from(cookies)
        if session_id is None:
            return Loaded(Session())
        backend = self.backend
        key = backend.key_for(session_id)
        version: Any = None
        legacy: str | None = None
        if self.merge:
            record = await self.guard.run("read a session", backend.read_for_update, key)
            payload, version = (None, None) if record is None else record
        else:
            payload = await self.guard.run("read a session", backend.read, key)
        if payload is None:
            payload, legacy = await self._read_legacy(session_id)
        data = _parse_object(payload)
        if data is None:
            # Unknown, expired or unreadable record: start afresh, never adopt the id.
            return Loaded(Session(), had_cookie=True)
        session = Session(data)
        session.loaded = payload
        return Loaded(session, had_cookie=True, session_id=session_id, version=version, legacy=legacy)

    async def _read_legacy(self, session_id: str) -> tuple[bytes | None, str | None]:
        """Look for the record under the older key forms; only called when the hashed key missed."""
        raw_key = self.backend.legacy_key_for(session_id)
        if raw_key is not None:
            payload = await self.guard.run("read a session", self.backend.read, raw_key)
            if payload is not None:
                return payload, "raw"
        if self.legacy_043:
            payload = await self.guard.run("read a 0.4.3 session", self.backend.read_043, session_id)
            if payload is not None:
                return payload, "043"
        return None, None

    def _cookie_for(self, session_id: str) -> str:
        payload = json.dumps({SESSION_ID_FIELD: session_id}).encode("utf-8")
        return self.cookie.set_header(self.codec.encode(payload))

    def can_save_late(self, loaded: Loaded) -> bool:
        """Whether changes made after the response started can still be stored (the id is known)."""
        return loaded.session_id is not None

    async def save(self, loaded: Loaded, session: Session, rolling: bool) -> list[str]:
        """Persist the session; afterwards ``loaded`` and ``session`` describe what is stored,
        so a later call (a WebSocket's end) saves only what changed since."""
        session_id = loaded.session_id
        if session.regenerate and session_id is not None:
            await self._remove(loaded, session_id)
            loaded.session_id = session_id = None
        payload = session.dump_if_changed()
        if payload is not None:
            if not dict.__len__(session):
                if session_id is not None:
                    await self._remove(loaded, session_id)
                loaded.session_id = None
                session.mark_saved(None)
                return [self.cookie.clear_header()] if loaded.had_cookie else []
            if session_id is None:
                session_id = await self._create(payload)
            else:
                stored = await (
                    self._migrate(loaded, session_id, payload)
                    if loaded.legacy
                    else self._update(loaded, session, session_id, payload)
                )
                if stored is None:
                    _log_dropped()
                    loaded.session_id = None
                    session.mark_saved(session.loaded)
                    return []
                payload = stored
            loaded.session_id = session_id
            session.mark_saved(payload)
            return [self._cookie_for(session_id)]
        if (
            rolling
            and session_id is not None
            and loaded.legacy != "043"
            and dict.__len__(session)
            and await self.guard.run(
                "renew a session", self.backend.touch, self._key_of(loaded, session_id), self.ttl
            )
        ):
            return [self._cookie_for(session_id)]
        return []

    def _key_of(self, loaded: Loaded, session_id: str) -> str:
        """The key the loaded record is stored under now."""
        if loaded.legacy == "raw":
            raw_key = self.backend.legacy_key_for(session_id)
            assert raw_key is not None  # only loaded as "raw" when the backend has one
            return raw_key
        return self.backend.key_for(session_id)

    async def _remove(self, loaded: Loaded, session_id: str) -> None:
        await self.guard.run("remove a session", self.backend.remove, self.backend.key_for(session_id))
        if loaded.legacy == "raw":
            await self.guard.run("remove a session", self.backend.remove, self._key_of(loaded, session_id))
        elif loaded.legacy == "043":
            await self.guard.run("remove a 0.4.3 session", self.backend.remove_043, session_id)
        loaded.legacy = None

    async def _create(self, payload: bytes) -> str:
        for _ in range(_CREATE_ATTEMPTS):
            session_id = new_session_id(self.session_id_bytes)
            key = self.backend.key_for(session_id)
            if await self.guard.run("create a session", self.backend.create, key, payload, self.ttl):
                return session_id
        raise BackendError(f"the store refused {_CREATE_ATTEMPTS} fresh session ids as taken")

    async def _migrate(self, loaded: Loaded, session_id: str, payload: bytes) -> bytes | None:
        """Save a session found under an older key form to the hashed key, and drop the old record.

        The old record must still exist (a logout meanwhile wins); returns ``None`` if it is gone.
        """
        backend, guard = self.backend, self.guard
        if loaded.legacy == "raw":
            raw_key = self._key_of(loaded, session_id)
            if not await guard.run("save a session", backend.replace, raw_key, payload, self.ttl):
                return None
        elif await guard.run("read a 0.4.3 session", backend.read_043, session_id) is None:
            return None
        key = backend.key_for(session_id)
        if not await guard.run("create a session", backend.create, key, payload, self.ttl):
            await guard.run("save a session", backend.replace, key, payload, self.ttl)
        if loaded.legacy == "raw":
            await guard.run("remove a session", backend.remove, self._key_of(loaded, session_id))
        else:
            await guard.run("remove a 0.4.3 session", backend.remove_043, session_id)
        loaded.legacy = None
        return payload

    async def _update(
        self, loaded: Loaded, session: Session, session_id: str, payload: bytes
    ) -> bytes | None:
        """Store a loaded session's changes; return what was stored, or ``None`` if its record is gone.

        With ``merge``, the keys this request changed are applied to the record as it is now,
        and the session is updated to the merged record.
        """
        key = self.backend.key_for(session_id)
        if not self.merge:
            replaced = await self.guard.run("save a session", self.backend.replace, key, payload, self.ttl)
            return payload if replaced else None
        original = _parse_object(session.loaded) or {}
        changed = {
            name: value
            for name, value in dict.items(session)
            if name not in original or JSON.dumps({"": value}) != JSON.dumps({"": original[name]})
        }
        deleted = [name for name in original if not dict.__contains__(session, name)]
        current, version = session.loaded, loaded.version
        for attempt in range(self.merge_attempts):
            record = _parse_object(current)
            if record is None:
                return None
            record.update(changed)
            for name in deleted:
                record.pop(name, None)
            merged = JSON.dumps(record)
            if await self.guard.run(
                "save a session", self.backend.compare_and_swap, key, version, merged, self.ttl
            ):
                dict.clear(session)
                dict.update(session, record)
                loaded.version = None
                return merged
            found = await self.guard.run("read a session", self.backend.read_for_update, key)
            if found is None:
                return None
            current, version = found
            await anyio.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # noqa: S311 - jitter, not a secret
        raise SessionConflictError(
            f"session store {self.backend.name} failed to save a session: the record changed under "
            f"each of {self.merge_attempts} attempts to merge this request's changes"
        )


def _log_dropped() -> None:
    logger.warning(
        "session changes dropped: the session's record was removed (logout, regeneration, revoke, "
        "expiry or a delete) while this request ran, and a removed session is never brought back"
    )
