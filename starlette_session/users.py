"""A user's sessions: the per-user index behind ``user_key``, ``SessionInfo``, listing and revoking.

With ``SessionMiddleware(..., user_key="user_id")``, every saved session that holds that key
is listed in an index record of its user, ``u-`` followed by the hex SHA-256 of
``str(session[user_key])``, kept in the same store as the sessions and updated by
compare-and-swap (so it works the same on every server-side backend, memcached included, which
cannot enumerate keys). An entry is keyed by the session's *handle*, its store key: the hash
of its id, which can be revoked but never turned into a cookie. Entries carry the session's
expiry and are pruned whenever the index is read or updated, so no sweep over all users is
needed. The session record keeps its metadata (creation time, user, client) under
``META_KEY``, out of ``request.session``. See ``docs/users.md``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette_session.exceptions import SessionConflictError
from starlette_session.ids import is_private_id
from starlette_session.serializers import JSON
from starlette_session.session import SessionNotAvailableError

if TYPE_CHECKING:
    from starlette_session.backends.base import SessionBackend
    from starlette_session.strategies import Loaded, ServerSideStrategy

__all__ = ["META_KEY", "SessionInfo", "index_key", "list_sessions", "logout_other_sessions"]

#: The top-level key of a stored record that holds its metadata (never in ``request.session``).
META_KEY = "__starlette_session__"
#: What starts every user index key.
INDEX_PREFIX = "u-"
#: Compare-and-swap attempts of one index update.
INDEX_ATTEMPTS = 32


@dataclass(frozen=True)
class SessionInfo:
    """One session of a user, as the index lists it.

    Attributes:
        handle: the revocation handle (the session's store key); not its id, never a cookie.
        created_at: when the session was created (epoch seconds).
        last_seen_at: when it was last saved or seen (refreshed at most every
            ``last_seen_interval`` seconds on reads).
        expires_at: when it expires unless used again.
        user_agent: the ``User-Agent`` it was last saved from (``track_client=True``).
        ip: the client address it was last saved from (``track_client=True``).
        current: it is the session of the request asking (``list_sessions()`` only).
    """

    handle: str
    created_at: float
    last_seen_at: float
    expires_at: float
    user_agent: str | None = None
    ip: str | None = None
    current: bool = False


def index_key(user: str) -> str:
    """Return the store key of ``user``'s index record."""
    return INDEX_PREFIX + hashlib.sha256(user.encode("utf-8")).hexdigest()


def entry(meta: dict[str, Any], expires_at: float) -> dict[str, Any]:
    """The index entry of a session from its record metadata."""
    value: dict[str, Any] = {"c": meta["c"], "s": meta["s"], "e": expires_at}
    if "a" in meta:
        value["a"] = meta["a"]
    if "i" in meta:
        value["i"] = meta["i"]
    return value


def _entries(data: bytes | None, now: float) -> dict[str, dict[str, Any]]:
    if data is None:
        return {}
    try:
        raw = JSON.loads(data)
    except ValueError:
        return {}
    return {
        handle: value
        for handle, value in raw.items()
        if isinstance(value, dict) and isinstance(value.get("e"), int | float) and value["e"] > now
    }


async def update_index(
    backend: SessionBackend,
    user: str,
    *,
    add: dict[str, dict[str, Any]] | None = None,
    remove: Iterable[str] = (),
    now: float | None = None,
) -> None:
    """Add and remove entries of ``user``'s index atomically, pruning expired ones.

    Raises:
        BackendError: the store failed.
        SessionConflictError: the index kept changing under every attempt.
    """
    key = index_key(user)
    removed = set(remove)
    for _ in range(INDEX_ATTEMPTS):
        moment = time.time() if now is None else now
        found = await backend.read_for_update(key)
        entries = {
            handle: value
            for handle, value in _entries(None if found is None else found[0], moment).items()
            if handle not in removed
        }
        entries.update(add or {})
        if found is None and not entries:
            return
        data = JSON.dumps(entries)
        ttl = max(1, math.ceil(max((value["e"] for value in entries.values()), default=moment + 1) - moment))
        if found is None:
            if await backend.create(key, data, ttl):
                return
        elif await backend.compare_and_swap(key, found[1], data, ttl):
            return
    raise SessionConflictError(
        f"session store {backend.name} failed to update a user's session index: it kept changing"
    )


async def list_user_sessions(
    backend: SessionBackend, user: str, *, current: str | None = None
) -> list[SessionInfo]:
    """Return ``user``'s live sessions, most recently seen first (``current``: a handle to mark)."""
    now = time.time()
    entries = _entries(await backend.read(index_key(user)), now)
    infos = [
        SessionInfo(
            handle=handle,
            created_at=float(value["c"]),
            last_seen_at=float(value["s"]),
            expires_at=float(value["e"]),
            user_agent=value.get("a"),
            ip=value.get("i"),
            current=handle == current,
        )
        for handle, value in entries.items()
    ]
    return sorted(infos, key=lambda info: info.last_seen_at, reverse=True)


def record_user(data: bytes | None) -> str | None:
    """Return the user a stored record is indexed under, from its metadata."""
    if data is None:
        return None
    try:
        meta = JSON.loads(data).get(META_KEY)
    except ValueError:
        return None
    user = meta.get("u") if isinstance(meta, dict) else None
    return user if isinstance(user, str) else None


async def revoke_session(backend: SessionBackend, handle: str) -> bool:
    """Delete the session whose handle is ``handle`` and its index entry; return whether it existed."""
    if not isinstance(handle, str) or not is_private_id(handle):
        return False
    data = await backend.read(handle)
    await backend.remove(handle)
    user = record_user(data)
    if user is not None:
        await update_index(backend, user, remove=[handle])
    return data is not None


async def revoke_user_sessions(backend: SessionBackend, user: str, *, keep: str | None = None) -> int:
    """Delete every session of ``user`` but ``keep`` (a handle or a public id); return how many."""
    kept = {keep, backend.key_for(keep)} if keep else set()
    handles = [info.handle for info in await list_user_sessions(backend, user) if info.handle not in kept]
    revoked = 0
    for handle in handles:
        if await backend.read(handle) is not None:
            revoked += 1
        await backend.remove(handle)
    if handles:
        await update_index(backend, user, remove=handles)
    return revoked


# -- inside a request --------------------------------------------------------------------------

_request: ContextVar[tuple[ServerSideStrategy, Loaded]] = ContextVar("starlette_session_users")


def _current(function: str) -> tuple[ServerSideStrategy, Loaded, str | None]:
    try:
        strategy, loaded = _request.get()
    except LookupError:
        raise SessionNotAvailableError(function) from None
    user_key = strategy.user_key
    assert user_key is not None  # only set when user_key is configured
    user = dict.get(loaded.session, user_key)
    return strategy, loaded, None if user is None else str(user)


async def list_sessions() -> list[SessionInfo]:
    """Return the sessions of the current request's user, the current one marked ``current``.

    Empty when the session holds no ``user_key``.

    Raises:
        SessionNotAvailableError: called outside a request handled by a ``SessionMiddleware``
            with ``user_key`` and a server-side backend.
    """
    strategy, loaded, user = _current("list_sessions")
    if user is None:
        return []
    handle = None if loaded.session_id is None else strategy.backend.key_for(loaded.session_id)
    return await list_user_sessions(strategy.backend, user, current=handle)


async def logout_other_sessions() -> int:
    """Revoke every session of the current request's user but this one; return how many.

    Raises:
        SessionNotAvailableError: as for ``list_sessions``.
    """
    strategy, loaded, user = _current("logout_other_sessions")
    if user is None:
        return 0
    return await strategy.revoke_others(user, loaded)
