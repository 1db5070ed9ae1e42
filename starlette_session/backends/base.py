"""The backend contract: ``SessionBackend``, the 0.4.3 adapter, one call helper, one error factory.

A backend is a byte store with a TTL in seconds; it knows nothing of cookies, signing or HTTP.
Every write states its precondition, so that a request in flight can never bring back a record
that a logout, a regeneration, a revoke or an expiry removed meanwhile:

* ``create``: store only if no live record has the id (a brand-new session);
* ``replace``: store only if a live record has the id (a session loaded by this request);
* ``compare_and_swap``: store only if the record is still the version read by
  ``read_for_update`` (the middleware's ``concurrency="merge"``);
* ``write``: store unconditionally (the dict API's ``set``, for use outside a request).

A broken precondition is reported by the return value (``False``), never by falling back to a
blind overwrite. Store failures are raised as ``BackendError``, built by ``backend_error``,
whose text never holds a session id, a key or a path made from one.

The byte methods take the record's *key*; the dict API (``get``, ``set``, ``delete``, for use
outside a request) takes the *public* id, the one in the cookie, and ``key_for`` turns it into
the key: by default the hash ``starlette_session.ids.private_id`` makes, so that the store
holds no id a cookie could carry.
"""

from __future__ import annotations

import inspect
import types
from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import anyio

from starlette_session import users
from starlette_session._bridge import run_sync
from starlette_session.exceptions import BackendError, ConfigurationError, StarletteSessionError
from starlette_session.expiry import ttl_seconds
from starlette_session.ids import is_valid_session_id, private_id
from starlette_session.interfaces import ISessionBackend
from starlette_session.serializers import JSON, Serializer
from starlette_session.users import SessionInfo

#: What an ``async def`` client method returns.
_Coroutine = types.CoroutineType

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DictBackendAdapter",
    "SessionBackend",
    "backend_error",
    "has_capability",
]

T = TypeVar("T")

#: The key prefix of the key-value stores (Redis, memcached) unless ``key_prefix`` says otherwise.
DEFAULT_KEY_PREFIX = "starlette_session:"

# Strings at least this long are taken out of error texts (session ids are 16 characters or more).
_MIN_REDACTED = 16
_MAX_DETAIL = 200


def backend_error(
    backend: str, operation: str, exc: BaseException | None = None, *, redact: Iterable[str] = ()
) -> BackendError:
    """Build the ``BackendError`` for a failed store call.

    The text names the backend, the operation and the kind of failure, with the first line of
    the original message when it has one; every string in ``redact`` (the session id, the key,
    the file path) is replaced by ``<redacted>``. Raise the result ``from None``: the original
    exception's text (a file name, SQL parameters) may hold the id.

    Args:
        backend: the backend's name, such as ``"Redis"``.
        operation: what failed, such as ``"read a session"``.
        exc: the store's exception, if any.
        redact: strings that must not appear in the text.

    Returns:
        The error, with ``backend`` and ``operation`` as attributes.
    """
    message = f"session store {backend} failed to {operation}"
    if exc is not None:
        detail = _detail(exc)
        for secret in redact:
            if len(secret) >= _MIN_REDACTED:
                detail = detail.replace(secret, "<redacted>")
        message += f": {type(exc).__name__}" + (f": {detail}" if detail else "")
    error = BackendError(message)
    error.backend = backend
    error.operation = operation
    return error


def _detail(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return exc.strerror or ""  # the file name may be made from a session id
    text = str(exc)
    return text.splitlines()[0][:_MAX_DETAIL] if text else ""


def _checked(public_id: object) -> str:
    if not is_valid_session_id(public_id):
        raise ConfigurationError(
            "invalid session id: ids are 16 to 128 characters of A-Z a-z 0-9 _ -; make them with "
            "starlette_session.ids.new_session_id()"
        )
    return public_id


def has_capability(backend: object, name: str) -> bool:
    """Return whether ``backend`` implements the optional method ``name`` itself."""
    method = getattr(type(backend), name, None)
    return method is not None and method is not getattr(SessionBackend, name, None)


class SessionBackend(ISessionBackend):
    """Base class of the shipped backends: bytes under an id, with a TTL in whole seconds.

    Subclasses implement ``read``, ``write`` and ``remove``, and should implement the atomic
    ``create`` and ``replace`` (the defaults here read, then write, which leaves a window in
    which a concurrent removal can be undone). Optional capabilities, used when present:
    ``read_for_update`` and ``compare_and_swap`` (needed by ``concurrency="merge"``),
    ``touch`` (rolling expiry), ``delete_expired`` and ``aclose``. Every method raises
    ``BackendError`` when the store fails.

    Session ids reaching these methods have been validated by the caller
    (``starlette_session.ids.is_valid_session_id``).
    """

    #: The pip extra that installs this backend's client library ("" for none).
    extra: ClassVar[str] = ""
    #: The store's name in error messages and events.
    name: str = "session store"

    serializer: Serializer = JSON

    #: TTL used by ``set`` when it is given ``exp=None``.
    default_ttl: int = ttl_seconds(None)

    #: Store records under the hash of the public id (the middleware's ``hash_ids``).
    hash_ids: bool = True
    #: When the hashed key misses, look the record up under the raw public id (written before
    #: ids were hashed); it moves to the hashed key on its next save.
    raw_id_fallback: bool = True

    #: Whether the client blocks: ``call`` then runs it in a worker thread.
    blocking: bool = False
    #: The client's exceptions that ``call`` turns into ``BackendError``.
    store_errors: tuple[type[BaseException], ...] = ()

    @abstractmethod
    async def read(self, session_id: str) -> bytes | None:
        """Return the bytes stored under ``session_id``, or ``None`` if missing or expired."""

    @abstractmethod
    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        """Store ``data`` under ``session_id``, replacing any record, expiring in ``ttl`` seconds."""

    @abstractmethod
    async def remove(self, session_id: str) -> None:
        """Delete the record for ``session_id``; a missing record is not an error."""

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        """Store ``data`` only if no live record has ``session_id``; return whether it was stored."""
        if await self.read(session_id) is not None:
            return False
        await self.write(session_id, data, ttl)
        return True

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        """Store ``data`` only if a live record has ``session_id``; return whether it was stored."""
        if await self.read(session_id) is None:
            return False
        await self.write(session_id, data, ttl)
        return True

    async def read_for_update(self, session_id: str) -> tuple[bytes, Any] | None:
        """Return the record and a version token for ``compare_and_swap``, or ``None`` if missing.

        The default token is the bytes themselves.
        """
        data = await self.read(session_id)
        return None if data is None else (data, data)

    async def compare_and_swap(self, session_id: str, version: Any, data: bytes, ttl: int) -> bool:
        """Store ``data`` only if the record is still at ``version``; return whether it was stored.

        ``False`` when the record changed or is gone since ``read_for_update``. Backends that
        can do this atomically override it; this default raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__qualname__} has no compare_and_swap")

    async def read_043(self, session_id: str) -> bytes | None:
        """Return, as JSON bytes, the record starlette-session 0.4.3 stored for ``session_id``.

        Only the stores 0.4.3 supported (Redis, memcached) implement it, for the middleware's
        ``legacy_043``; a record that is not a plain dict is treated as missing.
        """
        raise NotImplementedError(f"{type(self).__qualname__} cannot read starlette-session 0.4.3 records")

    async def remove_043(self, session_id: str) -> None:
        """Delete the record starlette-session 0.4.3 stored for ``session_id``."""
        raise NotImplementedError(f"{type(self).__qualname__} cannot remove starlette-session 0.4.3 records")

    async def touch(self, session_id: str, ttl: int) -> bool:
        """Reset the record's expiry to ``ttl`` seconds; return whether the record exists.

        The default reads the record and replaces it; stores with a native command override it.
        """
        data = await self.read(session_id)
        if data is None:
            return False
        return await self.replace(session_id, data, ttl)

    async def delete_expired(self) -> int:
        """Delete expired records and return how many were deleted.

        Stores that expire records by themselves (Redis, memcached) return 0.
        """
        return 0

    async def aclose(self) -> None:
        """Release resources the backend created itself (never the user's client)."""

    async def on_cancelled(self) -> None:
        """Called (shielded) when a store call was cancelled or timed out mid-way.

        Backends whose client is left in a bad state by that (aiomcache) repair it here.
        """

    @classmethod
    def accepts(cls, client: object) -> bool:
        """Return whether ``client`` is a client object this backend is built around.

        Used to pick the backend when ``backend_client`` is given without ``backend_type``.
        """
        return False

    @classmethod
    def from_client(cls, client: Any) -> SessionBackend:
        """Build the backend from the ``backend_client`` given to the middleware.

        Raises:
            ConfigurationError: the backend cannot be built from ``client``.
        """
        raise ConfigurationError(
            f"{cls.__name__} cannot be built from a backend_client; "
            "pass an instance as custom_session_backend instead"
        )

    # -- the one call helper ----------------------------------------------------------------

    async def call(
        self,
        operation: str,
        func: Callable[..., Any],
        /,
        *args: Any,
        redact: Iterable[str] = (),
        in_thread: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run a client call, in a worker thread if ``blocking``, else awaited.

        Args:
            operation: what the call does, for the error text (``"read a session"``).
            func: the client's method (or a function of the backend doing blocking work).
            redact: strings (id, key, path) kept out of the error text.
            in_thread: run ``func`` in a worker thread (``True``) or on the loop (``False``)
                whatever ``blocking`` says (``None``: as ``blocking`` says).

        Raises:
            BackendError: the call raised one of ``store_errors``.
        """
        try:
            if self.blocking if in_thread is None else in_thread:
                return await run_sync(func, *args, **kwargs)
            result = func(*args, **kwargs)
            # A coroutine (the usual async client) is told apart without inspect's three checks.
            return await result if type(result) is _Coroutine or inspect.isawaitable(result) else result
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.on_cancelled()
            raise
        except StarletteSessionError:
            raise
        except self.store_errors as exc:
            raise backend_error(self.name, operation, exc, redact=redact) from None

    # -- keys ------------------------------------------------------------------------------

    def key_for(self, public_id: str) -> str:
        """Return the key of the record of the session whose cookie carries ``public_id``."""
        return private_id(public_id) if self.hash_ids else public_id

    def legacy_key_for(self, public_id: str) -> str | None:
        """Return the raw key an older version stored ``public_id``'s record under, if it looks there."""
        return public_id if self.hash_ids and self.raw_id_fallback else None

    # -- a user's sessions (``user_key``), for use outside a request --------------------------

    async def list_user_sessions(self, user: str) -> list[SessionInfo]:
        """Return ``user``'s live sessions (indexed with the middleware's ``user_key``), newest first.

        Raises:
            BackendError: the store failed.
        """
        return await users.list_user_sessions(self, str(user))

    async def revoke_session(self, handle: str) -> bool:
        """Delete the session whose revocation handle is ``handle``; return whether it existed.

        Its next request gets an empty session, and a request in flight cannot write it back.

        Raises:
            BackendError: the store failed.
        """
        return await users.revoke_session(self, handle)

    async def revoke_user_sessions(self, user: str, keep: str | None = None) -> int:
        """Delete every session of ``user`` but ``keep`` (a handle or a public id); return how many.

        Raises:
            BackendError: the store failed.
        """
        return await users.revoke_user_sessions(self, str(user), keep=keep)

    # -- 0.4.3's dict API, by public id, for use outside a request ---------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the session whose public id is ``key``, or ``None`` (also for an invalid id)."""
        if not is_valid_session_id(key):
            return None
        data = await self.read(self.key_for(key))
        legacy = self.legacy_key_for(key)
        if data is None and legacy is not None:
            data = await self.read(legacy)
        if data is None:
            return None
        try:
            value = self.serializer.loads(data)
        except ValueError:
            return None
        value.pop(users.META_KEY, None)
        return value

    async def set(self, key: str, value: dict[str, Any], exp: int | None = None) -> str | None:
        """Store ``value`` as the session whose public id is ``key``, for ``exp`` seconds."""
        ttl = self.default_ttl if exp is None else ttl_seconds(exp)
        await self.write(self.key_for(_checked(key)), self.serializer.dumps(value), ttl)
        return None

    async def delete(self, key: str) -> Any:
        """Delete the session whose public id is ``key`` (under its raw key too, and from its
        user's index)."""
        record_key = self.key_for(_checked(key))
        user = users.record_user(await self.read(record_key))
        await self.remove(record_key)
        if user is not None:
            await users.update_index(self, user, remove=[record_key])
        legacy = self.legacy_key_for(key)
        if legacy is not None:
            await self.remove(legacy)


class DictBackendAdapter(SessionBackend):
    """Presents a 0.4.3-style ``ISessionBackend`` (dicts) as a byte store.

    Errors the user's backend raises become ``BackendError`` so that a store outage is never
    mistaken for a missing session. Such a backend has no conditional write, so ``create``
    and ``replace`` check with ``get`` before they ``set``: a removal landing between the
    two is undone. It has no ``compare_and_swap`` either, so ``concurrency="merge"`` refuses it.
    """

    store_errors = (Exception,)

    #: A 0.4.3 backend sees the public id as its key, as in 0.4.3 (``hash_ids=True`` on the
    #: middleware changes that).
    hash_ids = False

    def __init__(self, backend: ISessionBackend) -> None:
        self.backend = backend
        self.name = type(backend).__qualname__

    async def read(self, session_id: str) -> bytes | None:
        value = await self.call("get a session", self.backend.get, session_id, redact=(session_id,))
        if not value or not isinstance(value, dict):
            return None
        return JSON.dumps(value)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        await self.call(
            "set a session", self.backend.set, session_id, JSON.loads(data), ttl, redact=(session_id,)
        )

    async def remove(self, session_id: str) -> None:
        await self.call("delete a session", self.backend.delete, session_id, redact=(session_id,))
