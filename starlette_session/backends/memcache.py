"""memcached backends: ``MemcacheBackend`` (pymemcache) and ``AioMemcacheBackend`` (aiomcache).

pymemcache is a blocking client, so every call is bridged to a worker thread with
``run_sync``; aiomcache is asyncio-native and is awaited directly.

Both store the session bytes under ``key_prefix + session_id`` with memcached's expiry rule
(``starlette_session.expiry.memcached_exptime``: a TTL over 30 days is sent as a Unix time).
A new session is stored with ``add``, a loaded one with ``replace`` (so a record removed
meanwhile stays removed), a merge-mode update with ``gets``/``cas``. Every command waits for
memcached's answer. memcached expires records by itself, so ``delete_expired`` is a no-op; it
may also evict records early when it runs out of memory (a user is then logged out).
See ``docs/backends/memcached.md``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from enum import Enum
from typing import Any, TypeVar

import anyio

from starlette_session.backends.base import DEFAULT_KEY_PREFIX, SessionBackend, backend_error
from starlette_session.exceptions import ConfigurationError, MissingDependencyError
from starlette_session.expiry import memcached_exptime, ttl_seconds
from starlette_session.ids import MAX_ID_LENGTH

__all__ = ["DEFAULT_KEY_PREFIX", "MAX_KEY_BYTES", "AioMemcacheBackend", "MemcacheBackend"]

T = TypeVar("T")

#: memcached's limit on the length of a key.
MAX_KEY_BYTES = 250
# Printable ASCII without space: valid for memcached's text protocol, for pymemcache
# without ``allow_unicode_keys`` and for aiomcache alike.
_KEY_CHARS = frozenset(chr(code) for code in range(0x21, 0x7F))
# A value that a serde must hand back unchanged for the backend to use it.
_PROBE_KEY = b"starlette_session:probe"
_PROBE_VALUE = b'{"probe": "starlette_session"}'
# What a duck-typed pymemcache-like client (such as pymemcache's MockMemcacheClient) must have.
_PYMEMCACHE_METHODS = ("get", "set", "add", "replace", "delete", "touch")


def _key_problem(text: str) -> str | None:
    """Return why ``text`` cannot be (part of) a memcached key, or ``None`` if it can."""
    for char in text:
        if char not in _KEY_CHARS:
            return f"it contains {char!r}; keys allow printable ASCII without spaces"
    return None


def _check_prefix(key_prefix: str, client_prefix: bytes, owner: str) -> str:
    """Validate ``key_prefix`` so that it plus the longest session id fits in a key.

    Raises:
        ConfigurationError: the prefix has a forbidden character or is too long.
    """
    if not isinstance(key_prefix, str):
        raise ConfigurationError(f"{owner}(key_prefix=...) must be a str, not {type(key_prefix).__name__}")
    problem = _key_problem(key_prefix)
    if problem is not None:
        raise ConfigurationError(
            f"{owner}(key_prefix={key_prefix!r}) is not a valid memcached key: {problem}"
        )
    room = MAX_KEY_BYTES - len(client_prefix) - len(key_prefix)
    if room < MAX_ID_LENGTH:
        raise ConfigurationError(
            f"{owner}(key_prefix={key_prefix!r}) is too long: with the client's own key prefix "
            f"({len(client_prefix)} bytes) it leaves {room} of memcached's {MAX_KEY_BYTES} key bytes, "
            f"and session ids take up to {MAX_ID_LENGTH}"
        )
    return key_prefix


class _KeyMaker:
    """Turns session ids into memcached keys, refusing ids that would not make a valid key."""

    def __init__(self, key_prefix: str, room: int) -> None:
        self.key_prefix = key_prefix
        self._room = room  # key bytes left for the session id

    def key(self, session_id: str) -> str | None:
        """Return the key for ``session_id``, or ``None`` if it cannot be a memcached key."""
        if (
            not isinstance(session_id, str)
            or not 0 < len(session_id) <= self._room
            or _key_problem(session_id) is not None
        ):
            return None
        return self.key_prefix + session_id

    def required(self, session_id: str) -> str:
        """Return the key for ``session_id``.

        Raises:
            ConfigurationError: the id cannot be a memcached key (the middleware never makes one).
        """
        key = self.key(session_id)
        if key is None:
            raise ConfigurationError(
                f"session id of type {type(session_id).__name__} and length "
                f"{len(session_id) if isinstance(session_id, str) else '?'} cannot be a memcached key: "
                f"ids must be 1 to {self._room} printable ASCII characters without spaces"
            )
        return key


def _exptime(ttl: int) -> int:
    return memcached_exptime(ttl_seconds(ttl))


def _defines_module(obj: object, package: str) -> bool:
    # Look at the class and its bases, so subclasses are recognised without importing ``package``.
    return any(
        klass.__module__ == package or klass.__module__.startswith(package + ".")
        for klass in type(obj).__mro__
    )


# -- pymemcache -------------------------------------------------------------------------------


class _Form(Enum):
    """What the backend hands to the client's serde so that the bytes reach memcached unchanged."""

    BYTES = "bytes"  # no serde, pymemcache's serdes (pickle, compressed) and any pass-through
    TEXT = "text"  # MemcacheJSONSerde (0.4.3): str is stored as is with flag 1, bytes are refused
    # A duck-typed client with a text-only serde (pymemcache's MockMemcacheClient encodes str to
    # bytes before its serde sees it): hand the serde the session dict, read back as that dict.
    DICT = "dict"


def _wire(value: object) -> bytes | None:
    # What pymemcache sends for a value a serde returned: bytes as they are, str encoded.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("ascii", errors="replace")
    return None


def _round_trips(serde: Any, value: bytes | str) -> bool:
    """Return whether ``serde`` stores ``value`` as its bytes and reads those bytes back as is."""
    try:
        stored, flags = serde.serialize(_PROBE_KEY, value)
        wire = _wire(stored)
        if wire != _PROBE_VALUE:
            return False
        loaded = serde.deserialize(_PROBE_KEY, wire, flags)
    except Exception:  # a serde that fails on the probe is one we cannot use this way
        return False
    return _wire(loaded) == _PROBE_VALUE


def _form_for(serde: Any) -> _Form | None:
    if _round_trips(serde, _PROBE_VALUE):
        return _Form.BYTES
    if _round_trips(serde, _PROBE_VALUE.decode("ascii")):
        return _Form.TEXT
    return None


def _import_pymemcache() -> tuple[type[Any], type[Any], type[Any], type[BaseException]]:
    try:
        from pymemcache.client.base import Client, PooledClient  # noqa: PLC0415
        from pymemcache.client.hash import HashClient  # noqa: PLC0415
        from pymemcache.exceptions import MemcacheError  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("pymemcache", "memcache") from exc
    return Client, PooledClient, HashClient, MemcacheError


class MemcacheBackend(SessionBackend):
    """Sessions in memcached through a pymemcache ``Client``, ``PooledClient`` or ``HashClient``.

    pymemcache blocks, so each call runs in a worker thread (``run_sync``). pymemcache
    documents only ``PooledClient`` as thread-safe, so calls through a ``Client`` or a
    ``HashClient`` (whose failover bookkeeping is plain dicts) are serialised with a lock:
    one request at a time talks to memcached. Use a ``PooledClient`` (or ``from_servers``)
    for concurrency.

    What the backend does with your client:

    * It never replaces its serde. It hands the session bytes to the serde as they are,
      which reach memcached unchanged with no serde, with pymemcache's ``pickle_serde`` and
      ``compressed_serde`` (bytes get flag 0, never pickle) and with any serde that passes
      bytes through. ``MemcacheJSONSerde`` (0.4.3's) refuses bytes (``json.dumps`` fails),
      so with it the backend hands over the bytes decoded as ASCII (JSON is ASCII): stored
      as is with flag 1, and read back as the same bytes. The choice is
      made once, by a round trip through the serde in the constructor. Records 0.4.3 wrote
      (a dict, flag 2) read back as that dict. A serde that keeps neither bytes nor text
      unchanged is refused.
    * Every ``set``, ``delete`` and ``touch`` passes ``noreply=False``, so memcached's
      answer is awaited and checked; the client's ``default_noreply`` is not used.
    * Its ``no_delay`` is left as it is. starlette-session 0.4.3 sent fire-and-forget
      (``noreply``) sets, so the next command's small packet waited for an ACK that
      memcached delays by about 40 ms (Nagle's algorithm meeting delayed ACKs): 44 ms per
      set+get pair on loopback, against 0.05 ms with ``noreply=False`` (see
      ``benchmarks/memcache_nagle.py``). Because every command here waits for its answer,
      that stall cannot happen; ``from_servers`` also sets ``TCP_NODELAY``.

    With a ``HashClient``, its failover rules apply: while a server is marked as failing,
    reads of its keys come back as misses and writes as not stored (which raise here).

    Args:
        client: a pymemcache ``Client``, ``PooledClient`` or ``HashClient``.
        key_prefix: prepended to each session id to make the key; printable ASCII without
            spaces, short enough that it, the client's own ``key_prefix`` and a 128-character
            id fit in memcached's 250-byte keys.

    Raises:
        MissingDependencyError: pymemcache is not installed.
        ConfigurationError: ``client`` is not a pymemcache client, its serde cannot keep
            bytes unchanged, or ``key_prefix`` is invalid.
    """

    extra = "memcache"
    name = "memcached"
    blocking = True

    def __init__(self, client: Any, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        client_cls, pooled_cls, hash_cls, memcache_error = _import_pymemcache()
        if not isinstance(client, (client_cls, pooled_cls, hash_cls)):
            missing = [name for name in _PYMEMCACHE_METHODS if not callable(getattr(client, name, None))]
            if missing or not hasattr(client, "serde"):
                kind = f"{type(client).__module__}.{type(client).__qualname__}"
                lacks = f", which lacks {', '.join(missing)}" if missing else ""
                raise ConfigurationError(
                    "MemcacheBackend needs a pymemcache Client, PooledClient or HashClient (or an object"
                    f" with their methods and a serde), not {kind}{lacks};"
                    " for aiomcache, use AioMemcacheBackend"
                )
        client_prefix = getattr(client, "key_prefix", b"")
        if isinstance(client_prefix, str):  # HashClient keeps it as given
            client_prefix = client_prefix.encode("utf-8")
        self.client = client
        self.key_prefix = _check_prefix(key_prefix, client_prefix, "MemcacheBackend")
        self._keys = _KeyMaker(key_prefix, MAX_KEY_BYTES - len(client_prefix) - len(key_prefix))
        self._form = self._choose_form(_serdes(client, hash_cls))
        if self._form is _Form.TEXT and not isinstance(client, (client_cls, pooled_cls, hash_cls)):
            self._form = _Form.DICT
        # Only pooled clients are safe to share between worker threads; others get a lock.
        pooled = isinstance(client, pooled_cls) or getattr(client, "use_pooling", False) is True
        self._lock = None if pooled else threading.Lock()
        self.store_errors = (memcache_error, OSError, ValueError)
        self._owns_client = False

    @staticmethod
    def _choose_form(serdes: list[Any]) -> _Form:
        forms = {_form_for(serde) for serde in serdes}
        if forms == {_Form.BYTES}:
            return _Form.BYTES
        if forms == {_Form.TEXT}:
            return _Form.TEXT
        if forms == {_Form.BYTES, _Form.TEXT}:
            raise ConfigurationError(
                "MemcacheBackend: the HashClient's servers use different serdes; give them one serde"
            )
        raise ConfigurationError(
            "MemcacheBackend cannot use this pymemcache client: its serde changes both bytes and "
            "text values, so the session bytes would not come back as written. Pass a client "
            "without a serde (the backend stores bytes) or with MemcacheJSONSerde."
        )

    @classmethod
    def from_servers(
        cls,
        servers: Sequence[str | tuple[str, int]],
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        connect_timeout: float | None = 5.0,
        timeout: float | None = 5.0,
        max_pool_size: int | None = None,
    ) -> MemcacheBackend:
        """Build the backend with a client of its own, closed by ``aclose``.

        One server gives a thread-safe ``PooledClient``; several give a ``HashClient``
        spreading keys over them. Both use ``no_delay=True`` and no serde.

        Args:
            servers: ``"host:port"`` strings or ``(host, port)`` pairs.
            key_prefix: as for the constructor.
            connect_timeout: seconds to wait for a connection (``None``: forever).
            timeout: seconds to wait for each send or receive (``None``: forever).
            max_pool_size: connections per server in the pool (``None``: pymemcache's default).

        Raises:
            MissingDependencyError: pymemcache is not installed.
            ConfigurationError: no server is given.
        """
        _, pooled_cls, hash_cls, _ = _import_pymemcache()
        if isinstance(servers, (str, tuple)) or not servers:
            raise ConfigurationError(
                "MemcacheBackend.from_servers() needs a non-empty list of 'host:port' strings or "
                "(host, port) pairs"
            )
        options: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "timeout": timeout,
            "no_delay": True,
            "default_noreply": False,
        }
        if len(servers) == 1:
            client = pooled_cls(servers[0], max_pool_size=max_pool_size, **options)
        else:
            client = hash_cls(list(servers), use_pooling=True, max_pool_size=max_pool_size, **options)
        backend = cls(client, key_prefix=key_prefix)
        backend._owns_client = True
        return backend

    @classmethod
    def accepts(cls, client: object) -> bool:
        if not _defines_module(client, "pymemcache"):
            return False
        client_cls, pooled_cls, hash_cls, _ = _import_pymemcache()
        return isinstance(client, (client_cls, pooled_cls, hash_cls))

    @classmethod
    def from_client(cls, client: Any) -> MemcacheBackend:
        return cls(client)

    # -- the store --------------------------------------------------------------------------

    async def read(self, session_id: str) -> bytes | None:
        key = self._keys.key(session_id)
        if key is None:
            return None
        return self._as_bytes(await self._call("get a session", key, self.client.get, key))

    async def read_for_update(self, session_id: str) -> tuple[bytes, Any] | None:
        key = self._keys.key(session_id)
        if key is None:
            return None
        found = await self._call("gets a session", key, self.client.gets, key)
        if not isinstance(found, tuple):  # a HashClient skipping a failing server answers None
            return None
        value, token = found
        data = self._as_bytes(value)
        return None if data is None or token is None else (data, token)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        await self._store("set", session_id, data, ttl, True)

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        return await self._store("add", session_id, data, ttl, False)

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        return await self._store("replace", session_id, data, ttl, False)

    async def compare_and_swap(self, session_id: str, version: Any, data: bytes, ttl: int) -> bool:
        key = self._keys.required(session_id)
        stored = await self._call(
            "cas a session",
            key,
            self.client.cas,
            key,
            self._to_client(data),
            version,
            _exptime(ttl),
            noreply=False,
        )
        return stored is True

    async def _store(self, command: str, session_id: str, data: bytes, ttl: int, must_store: bool) -> bool:
        key = self._keys.required(session_id)
        method = getattr(self.client, command)
        stored = await self._call(
            f"{command} a session",
            key,
            method,
            key,
            self._to_client(data),
            expire=_exptime(ttl),
            noreply=False,
        )
        if must_store and stored is not True:
            raise backend_error(
                self.name, "set a session (NOT_STORED, or the HashClient treats the server as failing)"
            )
        return stored is True

    async def remove(self, session_id: str) -> None:
        key = self._keys.required(session_id)
        # False means "not found", which is fine: the record is gone either way.
        await self._call("delete a session", key, self.client.delete, key, noreply=False)

    async def touch(self, session_id: str, ttl: int) -> bool:
        key = self._keys.key(session_id)
        if key is None:
            return False
        touched = await self._call(
            "touch a session", key, self.client.touch, key, expire=_exptime(ttl), noreply=False
        )
        return touched is True

    async def read_043(self, session_id: str) -> bytes | None:
        """Return the JSON of the record starlette-session 0.4.3 stored under the bare id.

        0.4.3 handed the dict to the client's serde (``MemcacheJSONSerde``: read back as the
        dict); bytes are taken as its pickle and go through the safe unpickler.
        """
        from starlette_session.legacy import load_043_record  # noqa: PLC0415 - only with legacy_043

        if _key_problem(session_id) is not None:
            return None
        value = await self._call("get a 0.4.3 session", session_id, self.client.get, session_id)
        record = value if isinstance(value, dict) else None
        if isinstance(value, bytes):
            record = load_043_record(value)
        if not isinstance(record, dict):
            return None
        try:
            return self.serializer.dumps(record)
        except (TypeError, ValueError):
            return None

    async def remove_043(self, session_id: str) -> None:
        await self._call("delete a 0.4.3 session", session_id, self.client.delete, session_id, noreply=False)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._call("close the client", "", self.client.close)

    # -- helpers ----------------------------------------------------------------------------

    def _to_client(self, data: bytes) -> bytes | str | dict[str, Any]:
        if self._form is _Form.BYTES:
            return data
        if self._form is _Form.DICT:
            return self.serializer.loads(data)
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            raise backend_error(
                self.name,
                "store a session: the client's serde (MemcacheJSONSerde?) stores text only, and this "
                "session data is not ASCII; use a client without a serde",
            ) from None

    def _as_bytes(self, value: object) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            # A record starlette-session 0.4.3 wrote through MemcacheJSONSerde (flag 2).
            return self.serializer.dumps(value)
        return None  # not a session record: read as missing, like undecodable bytes

    def _locked(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._lock is None:
            return func(*args, **kwargs)
        with self._lock:
            return func(*args, **kwargs)

    async def _call(self, operation: str, key: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        result: T = await self.call(operation, self._locked, func, *args, redact=(key,), **kwargs)
        return result


def _serdes(client: Any, hash_cls: type[Any]) -> list[Any]:
    """The serde objects that will see the backend's values (one per server for a HashClient)."""
    nodes: Iterable[Any] = client.clients.values() if isinstance(client, hash_cls) else [client]
    serdes = [node.serde for node in nodes]
    if not serdes:  # a HashClient with no server yet: its future nodes get default_kwargs
        from pymemcache.serde import LegacyWrappingSerde  # noqa: PLC0415

        kwargs = client.default_kwargs
        serdes = [
            kwargs.get("serde") or LegacyWrappingSerde(kwargs.get("serializer"), kwargs.get("deserializer"))
        ]
    return serdes


# -- aiomcache --------------------------------------------------------------------------------


def _import_aiomcache() -> tuple[type[Any], type[BaseException]]:
    try:
        from aiomcache.client import FlagClient  # noqa: PLC0415
        from aiomcache.exceptions import ClientException  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("aiomcache", "aiomemcache") from exc
    return FlagClient, ClientException


class AioMemcacheBackend(SessionBackend):
    """Sessions in memcached through an ``aiomcache.Client``, awaited on the event loop.

    aiomcache takes and returns bytes, so the session bytes are stored as they are (flag 0).
    ``touch`` uses memcached's native command. Every command waits for memcached's answer;
    a write that is not stored raises ``BackendError``.

    aiomcache has no timeout of its own: ``timeout`` bounds each call here. When a call is
    timed out or cancelled mid-command, its connection goes back to aiomcache's pool with
    memcached's answer still unread, and the next command on it would read that stale
    answer; so the backend then closes the pool's idle connections (aiomcache opens new
    ones on demand). That is the only thing it does to your client.

    Args:
        client: an ``aiomcache.Client`` (or ``FlagClient``).
        key_prefix: prepended to each session id to make the key (see ``MemcacheBackend``).
        timeout: seconds each memcached call may take before ``BackendError`` (``None``: no limit).

    Raises:
        MissingDependencyError: aiomcache is not installed.
        ConfigurationError: ``client`` is not an aiomcache client, or ``key_prefix`` is invalid.
    """

    extra = "aiomemcache"
    name = "memcached (aiomcache)"

    def __init__(
        self, client: Any, *, key_prefix: str = DEFAULT_KEY_PREFIX, timeout: float | None = None
    ) -> None:
        flag_client_cls, client_exception = _import_aiomcache()
        if not isinstance(client, flag_client_cls):
            raise ConfigurationError(
                "AioMemcacheBackend needs an aiomcache.Client, not "
                f"{type(client).__module__}.{type(client).__qualname__}; for pymemcache use MemcacheBackend"
            )
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"AioMemcacheBackend(timeout={timeout!r}) must be positive or None")
        self.client = client
        self.key_prefix = _check_prefix(key_prefix, b"", "AioMemcacheBackend")
        self.timeout = timeout
        self._keys = _KeyMaker(key_prefix, MAX_KEY_BYTES - len(key_prefix))
        self.store_errors = (
            client_exception,
            OSError,  # connection refused or reset; TimeoutError on 3.11+
            EOFError,  # asyncio.IncompleteReadError: the server closed mid-answer
            asyncio.TimeoutError,
            socket.timeout,
        )

    @classmethod
    def accepts(cls, client: object) -> bool:
        if not _defines_module(client, "aiomcache"):
            return False
        flag_client_cls, _ = _import_aiomcache()
        return isinstance(client, flag_client_cls)

    @classmethod
    def from_client(cls, client: Any) -> AioMemcacheBackend:
        return cls(client)

    async def read(self, session_id: str) -> bytes | None:
        key = self._keys.key(session_id)
        if key is None:
            return None
        return _bytes_or_none(await self._call("get a session", self.client.get, key.encode("ascii")))

    async def read_for_update(self, session_id: str) -> tuple[bytes, Any] | None:
        key = self._keys.key(session_id)
        if key is None:
            return None
        value, token = await self._call("gets a session", self.client.gets, key.encode("ascii"))
        data = _bytes_or_none(value)
        return None if data is None or token is None else (data, token)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        key = self._keys.required(session_id).encode("ascii")
        if await self._call("set a session", self.client.set, key, bytes(data), _exptime(ttl)) is not True:
            raise backend_error(self.name, "set a session (NOT_STORED)")

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        key = self._keys.required(session_id).encode("ascii")
        return await self._call("add a session", self.client.add, key, bytes(data), _exptime(ttl)) is True

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        key = self._keys.required(session_id).encode("ascii")
        return (
            await self._call("replace a session", self.client.replace, key, bytes(data), _exptime(ttl))
            is True
        )

    async def compare_and_swap(self, session_id: str, version: Any, data: bytes, ttl: int) -> bool:
        key = self._keys.required(session_id).encode("ascii")
        swapped = await self._call("cas a session", self.client.cas, key, bytes(data), version, _exptime(ttl))
        return swapped is True

    async def remove(self, session_id: str) -> None:
        key = self._keys.required(session_id).encode("ascii")
        await self._call("delete a session", self.client.delete, key)

    async def touch(self, session_id: str, ttl: int) -> bool:
        key = self._keys.key(session_id)
        if key is None:
            return False
        touched = await self._call("touch a session", self.client.touch, key.encode("ascii"), _exptime(ttl))
        return touched is True

    async def read_043(self, session_id: str) -> bytes | None:
        """Return the JSON of the record starlette-session 0.4.3 pickled under the bare id."""
        from starlette_session.legacy import load_043_record  # noqa: PLC0415 - only with legacy_043

        if _key_problem(session_id) is not None:
            return None
        value = await self._call("get a 0.4.3 session", self.client.get, session_id.encode("ascii"))
        record = load_043_record(value) if isinstance(value, bytes) else None
        return None if record is None else self.serializer.dumps(record)

    async def remove_043(self, session_id: str) -> None:
        await self._call("delete a 0.4.3 session", self.client.delete, session_id.encode("ascii"))

    async def _call(self, operation: str, func: Callable[..., Awaitable[T]], key: bytes, *args: Any) -> T:
        redact = (key.decode("ascii"),)
        if self.timeout is None:  # the middleware's store_timeout bounds it (a cancel scope costs)
            result: T = await self.call(operation, func, key, *args, redact=redact)
            return result
        try:
            with anyio.fail_after(self.timeout):
                bounded: T = await self.call(operation, func, key, *args, redact=redact)
                return bounded
        except TimeoutError:
            raise backend_error(self.name, f"{operation} within {self.timeout} s") from None

    async def on_cancelled(self) -> None:
        # A command cut off mid-way leaves memcached's answer unread on its connection, which
        # aiomcache's pool would hand to the next command: close the pool's idle connections
        # (aiomcache opens new ones on demand).
        await self.client.close()


def _bytes_or_none(value: object) -> bytes | None:
    # A FlagClient's handler may turn a value into something else: not our record.
    return value if isinstance(value, bytes) else None
