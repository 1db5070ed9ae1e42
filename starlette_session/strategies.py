"""Where the session data lives: in the cookie, or in a store with only its id in the cookie.

The middleware holds one strategy, picked at construction, and never asks which it has.
A strategy loads the session from the request's cookies, and at response start returns the
Set-Cookie header values to send.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from starlette_session import users
from starlette_session.cookies import DEFAULT_MAX_COOKIE_SIZE, CookieJar, CookieSettings
from starlette_session.events import EventType, Observer, SessionEvent, emit
from starlette_session.exceptions import BackendError, SessionConflictError
from starlette_session.expiry import ttl_seconds
from starlette_session.ids import is_private_id, is_valid_session_id, new_session_id
from starlette_session.serializers import JSON
from starlette_session.session import Session
from starlette_session.signing import CookieCodec
from starlette_session.users import META_KEY

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
#: Seconds between refreshes of a session's last-seen time by requests that only read it.
DEFAULT_LAST_SEEN_INTERVAL = 300.0
# The longest server-side session cookie accepted (ours are about 100 characters): a longer one
# is refused before its signature is checked.
_MAX_ID_COOKIE = 1024
# Id-cookie payloads whose parsed id is remembered (a few hundred KB at most).
_ID_CACHE_SIZE = 4096
# The most characters of a User-Agent or address kept by ``track_client``.
_MAX_CLIENT_TEXT = 512


@dataclass(slots=True)
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
    #: The loaded record's metadata (``users.META_KEY``): creation time, user, client.
    meta: dict[str, Any] | None = None
    #: ``track_client``: the request's User-Agent and client address, set by the middleware.
    client: tuple[str | None, str | None] | None = None


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
        if value is None or len(value) > self.jar.max_size:  # longer than any cookie we issue
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
    hashed key by its next save. With ``user_key``, ``track_client`` or ``absolute_max_age``,
    the record also keeps its metadata (``users.META_KEY``) and, with ``user_key``, its user's
    index is kept in step. Every store call runs through ``guard`` (timeout and breaker).
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
        user_key: str | None = None,
        track_client: bool = False,
        absolute_max_age: int | None = None,
        last_seen_interval: float = DEFAULT_LAST_SEEN_INTERVAL,
        events: Observer | None = None,
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
        self.user_key = user_key
        self.track_client = track_client
        self.absolute_max_age = absolute_max_age
        self.last_seen_interval = last_seen_interval
        self.events = events
        #: The clock of the metadata (creation, last seen, absolute timeout); tests replace it.
        self.clock: Callable[[], float] = time.time
        self.with_meta = user_key is not None or track_client or absolute_max_age is not None
        # Verified id-cookie payloads -> the id they name (parsing the JSON is most of the cost).
        self._ids: dict[bytes, str] = {}

    def _emit(self, kind: EventType, session_id: str | None = None) -> None:
        if self.events is not None:
            handle = None if session_id is None else self.backend.key_for(session_id)
            emit(self.events, SessionEvent(kind, self.backend.name, self.guard.last_duration, handle))

    def session_id_from(self, cookies: dict[str, str]) -> str | None:
        """Return the valid public session id named by the request's cookie, if any."""
        value = cookies.get(self.cookie.name)
        if value is None or len(value) > _MAX_ID_COOKIE:  # an id cookie is short: not one of ours
            return None
        payload = self.codec.decode(value)  # checks the signature (and age) on every request
        if payload is None:
            return None
        session_id = self._ids.get(payload)
        if session_id is None:
            data = _parse_object(payload)
            found = None if data is None else data.get(SESSION_ID_FIELD)
            # A private id (a store key) is never taken from a cookie.
            if not is_valid_session_id(found) or is_private_id(found):
                return None
            if len(self._ids) >= _ID_CACHE_SIZE:
                self._ids.clear()  # cheaper than LRU bookkeeping on every hit
            session_id = self._ids[payload] = str(found)
        return session_id

    async def load(self, cookies: dict[str, str]) -> Loaded:
        session_id = self.session_id_from(cookies)
        if session_id is None:
            if self.events is not None and self.cookie.name in cookies:
                emit(self.events, SessionEvent("rejected_cookie", self.backend.name))
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
            self._emit("expired")
            return Loaded(Session(), had_cookie=True)
        meta = data.pop(META_KEY, None)
        if meta is not None:
            payload = JSON.dumps(data)  # what change detection compares with: the data alone
            if not isinstance(meta, dict) or not isinstance(meta.get("c"), int | float):
                meta = None
        if (
            self.absolute_max_age is not None
            and meta is not None
            and self.clock() - meta["c"] >= self.absolute_max_age
        ):
            self._emit("expired", session_id)  # past its absolute lifetime, however active
            return Loaded(Session(), had_cookie=True)
        session = Session(data)
        session.loaded = payload
        if self.events is not None:
            self._emit("loaded", session_id)
        return Loaded(
            session, had_cookie=True, session_id=session_id, version=version, legacy=legacy, meta=meta
        )

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
        old_handle = None if session_id is None or self.user_key is None else self.backend.key_for(session_id)
        old_user = None if loaded.meta is None else loaded.meta.get("u")
        if session.regenerate and session_id is not None:
            await self._remove(loaded, session_id)
            self._emit("regenerated", session_id)
            loaded.session_id = session_id = None
        payload = session.dump_if_changed()
        if payload is not None:
            if not dict.__len__(session):
                if session_id is not None:
                    await self._remove(loaded, session_id)
                    self._emit("destroyed", session_id)
                await self._reindex(old_user, old_handle, None, None)
                loaded.session_id = None
                loaded.meta = None
                session.mark_saved(None)
                return [self.cookie.clear_header()] if loaded.had_cookie else []
            meta = self._meta(loaded, session, fresh=session_id is None)
            ttl = self._ttl(meta)
            if session_id is None:
                session_id = await self._create(self._record(payload, meta), ttl)
                self._emit("created", session_id)
            else:
                stored = await (
                    self._migrate(loaded, session_id, self._record(payload, meta), ttl)
                    if loaded.legacy
                    else self._update(loaded, session, session_id, payload, meta, ttl)
                )
                if stored is None:
                    _log_dropped()
                    loaded.session_id = None
                    session.mark_saved(session.loaded)
                    return []
                payload = stored
                self._emit("saved", session_id)
            loaded.session_id = session_id
            loaded.meta = meta
            session.mark_saved(payload)
            await self._reindex(old_user, old_handle, session_id, meta, ttl)
            return [self._cookie_for(session_id)]
        if self.user_key is not None and session_id is not None and dict.__len__(session):
            await self._refresh_last_seen(loaded, session, session_id)
        if rolling and session_id is not None and loaded.legacy != "043" and dict.__len__(session):
            ttl = self._ttl(loaded.meta)
            key = self._key_of(loaded, session_id)
            if await self.guard.run("renew a session", self.backend.touch, key, ttl):
                user = None if loaded.meta is None else loaded.meta.get("u")
                if self.user_key is not None and user is not None and loaded.meta is not None:
                    # The index entry expires with the session: renew it too, or "revoke all" misses it.
                    handle = self.backend.key_for(session_id)
                    await self._update_index(user, {handle: users.entry(loaded.meta, self.clock() + ttl)}, [])
                return [self._cookie_for(session_id)]
        return []

    # -- metadata and the user index ----------------------------------------------------------

    def _meta(self, loaded: Loaded, session: Session, *, fresh: bool) -> dict[str, Any] | None:
        if not self.with_meta:
            return None
        now = self.clock()
        created = now if fresh or loaded.meta is None else loaded.meta["c"]
        meta: dict[str, Any] = {"c": created, "s": now}
        if self.user_key is not None:
            user = dict.get(session, self.user_key)
            if user is not None:
                meta["u"] = str(user)
        if self.track_client and loaded.client is not None:
            user_agent, ip = loaded.client
            if user_agent is not None:
                meta["a"] = user_agent[:_MAX_CLIENT_TEXT]
            if ip is not None:
                meta["i"] = ip[:_MAX_CLIENT_TEXT]
        return meta

    def _ttl(self, meta: dict[str, Any] | None) -> int:
        if self.absolute_max_age is None or meta is None:
            return self.ttl
        left = math.ceil(float(meta["c"]) + self.absolute_max_age - self.clock())
        return max(1, min(self.ttl, left))

    @staticmethod
    def _record(payload: bytes, meta: dict[str, Any] | None) -> bytes:
        """The stored bytes: the session's JSON, with the metadata spliced in when there is any."""
        if meta is None:
            return payload
        extra = b'"' + META_KEY.encode() + b'": ' + JSON.dumps(meta)
        return b"{" + extra + b"}" if payload == b"{}" else payload[:-1] + b", " + extra + b"}"

    async def _reindex(
        self,
        old_user: str | None,
        old_handle: str | None,
        session_id: str | None,
        meta: dict[str, Any] | None,
        ttl: int = 0,
    ) -> None:
        """Keep the user index in step: drop the old entry, add (or refresh) the new one."""
        if self.user_key is None:
            return
        handle = None if session_id is None else self.backend.key_for(session_id)
        user = None if meta is None else meta.get("u")
        stale = [old_handle] if old_handle is not None and (old_handle != handle or old_user != user) else []
        if old_user is not None and stale and old_user != user:
            await self._update_index(old_user, None, stale)
            stale = []
        if user is not None and handle is not None and meta is not None:
            await self._update_index(user, {handle: users.entry(meta, self.clock() + ttl)}, stale)

    async def _update_index(self, user: str, add: dict[str, Any] | None, remove: list[str]) -> None:
        await self.guard.run(
            "update a user's session index",
            functools.partial(users.update_index, add=add, remove=remove),
            self.backend,
            user,
        )

    async def _refresh_last_seen(self, loaded: Loaded, session: Session, session_id: str) -> None:
        """On a read, refresh the record's and the index's last-seen time if it is old enough."""
        meta = loaded.meta
        if self.user_key is None or meta is None or meta.get("u") is None or loaded.legacy:
            return
        if self.clock() - float(meta.get("s", 0)) < self.last_seen_interval or session.loaded is None:
            return
        refreshed = {**meta, "s": self.clock()}
        ttl = self._ttl(refreshed)
        key = self.backend.key_for(session_id)
        if await self.guard.run(
            "save a session", self.backend.replace, key, self._record(session.loaded, refreshed), ttl
        ):
            loaded.meta = refreshed
            await self._update_index(refreshed["u"], {key: users.entry(refreshed, self.clock() + ttl)}, [])

    async def revoke_others(self, user: str, loaded: Loaded) -> int:
        """Revoke every session of ``user`` but the one ``loaded`` describes; return how many."""
        keep = None if loaded.session_id is None else self.backend.key_for(loaded.session_id)
        revoke = functools.partial(users.revoke_user_sessions, keep=keep)
        count: int = await self.guard.run("revoke a user's sessions", revoke, self.backend, user)
        if count:
            self._emit("revoked")
        return count

    # -- the store --------------------------------------------------------------------------------

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

    async def _create(self, record: bytes, ttl: int) -> str:
        for _ in range(_CREATE_ATTEMPTS):
            session_id = new_session_id(self.session_id_bytes)
            key = self.backend.key_for(session_id)
            if await self.guard.run("create a session", self.backend.create, key, record, ttl):
                return session_id
        raise BackendError(f"the store refused {_CREATE_ATTEMPTS} fresh session ids as taken")

    async def _migrate(self, loaded: Loaded, session_id: str, record: bytes, ttl: int) -> bytes | None:
        """Save a session found under an older key form to the hashed key, and drop the old record.

        The old record must still exist (a logout meanwhile wins); returns the session's JSON
        (without metadata), or ``None`` if the record is gone.
        """
        backend, guard = self.backend, self.guard
        if loaded.legacy == "raw":
            raw_key = self._key_of(loaded, session_id)
            if not await guard.run("save a session", backend.replace, raw_key, record, ttl):
                return None
        elif await guard.run("read a 0.4.3 session", backend.read_043, session_id) is None:
            return None
        key = backend.key_for(session_id)
        if not await guard.run("create a session", backend.create, key, record, ttl):
            await guard.run("save a session", backend.replace, key, record, ttl)
        if loaded.legacy == "raw":
            await guard.run("remove a session", backend.remove, self._key_of(loaded, session_id))
        else:
            await guard.run("remove a 0.4.3 session", backend.remove_043, session_id)
        loaded.legacy = None
        return JSON.dumps(dict(dict.items(loaded.session)))

    async def _update(
        self,
        loaded: Loaded,
        session: Session,
        session_id: str,
        payload: bytes,
        meta: dict[str, Any] | None,
        ttl: int,
    ) -> bytes | None:
        """Store a loaded session's changes; return the session's JSON as stored (without
        metadata), or ``None`` if its record is gone.

        With ``merge``, the keys this request changed are applied to the record as it is now,
        and the session is updated to the merged record.
        """
        key = self.backend.key_for(session_id)
        if not self.merge:
            stored_bytes = self._record(payload, meta)
            replaced = await self.guard.run("save a session", self.backend.replace, key, stored_bytes, ttl)
            return payload if replaced else None
        original = _parse_object(session.loaded) or {}
        changed = {
            name: value
            for name, value in dict.items(session)
            if name not in original or JSON.dumps({"": value}) != JSON.dumps({"": original[name]})
        }
        deleted = [name for name in original if not dict.__contains__(session, name)]
        current: bytes | None = (
            None if loaded.version is None else self._record(session.loaded or b"{}", loaded.meta)
        )
        version = loaded.version
        for attempt in range(self.merge_attempts):
            if current is None:
                found = await self.guard.run("read a session", self.backend.read_for_update, key)
                if found is None:
                    return None
                current, version = found
            record = _parse_object(current)
            if record is None:
                return None
            record.pop(META_KEY, None)
            record.update(changed)
            for name in deleted:
                record.pop(name, None)
            merged = JSON.dumps(record)
            stored = self._record(merged, meta)
            if await self.guard.run(
                "save a session", self.backend.compare_and_swap, key, version, stored, ttl
            ):
                dict.clear(session)
                dict.update(session, record)
                loaded.version = None
                return merged
            current = None
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
