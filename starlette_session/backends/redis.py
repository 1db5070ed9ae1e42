"""Redis backends: ``RedisBackend`` (sync client) and ``AsyncRedisBackend`` (asyncio client).

Install:
    ``pip install 'starlette-session[redis]'`` (redis-py; both backends use it).

Which backend:
    ``BackendType.redis`` (``RedisBackend``) takes a sync ``redis.Redis`` or
    ``redis.cluster.RedisCluster``, as starlette-session 0.4.3 did. ``BackendType.aioRedis``
    (``AsyncRedisBackend``) takes a ``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster``. When ``backend_client`` is given without
    ``backend_type``, the backend is picked from the client's class alone: a class from the
    ``redis.asyncio`` package (or a subclass of one) gives ``aioRedis``, a class from any other
    ``redis`` module gives ``redis``. redis-py is imported only once the client's class (or one
    of its bases) is seen to come from it, so detection never imports redis for other clients.
    Pipelines are refused: commands sent to them are only queued.

Commands:
    Every operation is one command on the client object you passed, never on a connection or
    pipeline made from it, so code that wraps or instruments your client sees every call: a
    read is one ``GET``, a write one ``SET key value EX ttl``, a removal one ``DEL``, and
    ``touch`` (rolling expiry) one ``EXPIRE``. ``DEL`` is sent with ``execute_command``, as
    ``Redis.delete`` does, because the cluster clients' ``delete`` goes through a pipeline
    made for the call. The backend never closes your client.

Expiry:
    Redis expires records by itself: each write sets the key's TTL (``EX``) to the TTL the
    middleware works out from ``max_age`` (``starlette_session.expiry.ttl_seconds``); when
    ``max_age`` is ``None`` (a browser-session cookie) the middleware's fallback TTL is used,
    14 days by default. ``delete_expired`` has nothing to do and returns 0.

Not blocking the event loop:
    ``AsyncRedisBackend`` awaits the asyncio client directly. ``RedisBackend`` runs each
    blocking call in a worker thread through ``starlette_session._bridge.run_sync`` (anyio's
    thread pool), which costs a thread hop per command; prefer the asyncio client in new code.

Keys:
    Records are stored under ``key_prefix + session_id``; ``key_prefix`` defaults to
    ``"starlette_session:"``. It may hold no whitespace or control characters and at most
    ``MAX_KEY_PREFIX_LENGTH`` characters. ``key_prefix=""`` uses the bare session id as the
    key, as starlette-session 0.4.3 did. Note that 0.4.3 stored *pickled* values, which this
    package never unpickles (unpickling lets whoever can write to Redis run code on your
    servers): such records read as missing, so their users get a new, empty session. On a
    Redis Cluster, keep hash tags (``{...}``) out of the prefix, or every session lands on
    one slot.

Values:
    The bytes given to ``write`` (UTF-8 JSON from the session serializer). A client made with
    ``decode_responses=True`` returns ``str``; it is encoded back with the client's own
    encoding. A value such a client cannot decode (foreign or pickled data) reads as missing.

Errors:
    Every redis-py failure (``ConnectionError``, ``TimeoutError``, any ``RedisError`` or
    cluster error) is raised as ``BackendError`` naming the command, with the original as
    its cause. Nothing is swallowed: a store outage fails the request rather than handing it
    an empty session that would overwrite the real one. The redis client's own retry policy
    applies before that.

Limits:
    No atomic update: two concurrent requests of one session both write, and the last write
    wins. The sync backend shares anyio's thread pool (40 threads by default) with every
    other ``run_sync`` caller, which bounds its concurrent Redis calls; give the client's
    connection pool at least that many connections.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from starlette_session._bridge import run_sync
from starlette_session.exceptions import BackendError, ConfigurationError, MissingDependencyError
from starlette_session.interfaces import SessionBackend

if TYPE_CHECKING:
    import redis as redis_module
    import redis.asyncio as aioredis_module

__all__ = ["DEFAULT_KEY_PREFIX", "MAX_KEY_PREFIX_LENGTH", "AsyncRedisBackend", "RedisBackend"]

#: The key prefix used unless ``key_prefix`` says otherwise.
DEFAULT_KEY_PREFIX = "starlette_session:"

#: The longest ``key_prefix`` accepted.
MAX_KEY_PREFIX_LENGTH = 256


def _import_redis() -> types.ModuleType:
    """Import redis-py with its asyncio and cluster modules, or name the extra to install."""
    try:
        import redis  # noqa: PLC0415 - optional dependency, imported on use
        import redis.asyncio  # noqa: PLC0415
        import redis.asyncio.cluster  # noqa: PLC0415
        import redis.cluster  # noqa: PLC0415
        import redis.exceptions  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("redis", "redis") from exc
    return redis


def _classes(client: object) -> list[type]:
    # ``__class__`` as well as ``type()``: proxies that wrap a client report its class there.
    found = list(type(client).__mro__)
    try:
        reported = client.__class__
    except Exception:  # a ``__class__`` that raises just means "not a redis client"
        return found
    if isinstance(reported, type):
        found.extend(reported.__mro__)
    return found


def _from_module(client: object, *packages: str) -> bool:
    """Return whether ``client``'s class, or one of its bases, comes from one of ``packages``."""
    for cls in _classes(client):
        module = getattr(cls, "__module__", None) or ""
        if any(module == package or module.startswith(package + ".") for package in packages):
            return True
    return False


def _is_pipeline(redis: Any, client: object) -> bool:
    return isinstance(
        client, (redis.client.Pipeline, redis.cluster.ClusterPipeline, redis.asyncio.client.Pipeline)
    )


def _is_sync_client(redis: Any, client: object) -> bool:
    return isinstance(client, (redis.Redis, redis.cluster.RedisCluster)) and not _is_pipeline(redis, client)


def _is_async_client(redis: Any, client: object) -> bool:
    return isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)) and not (
        _is_pipeline(redis, client)
    )


def _describe(client: object) -> str:
    cls = type(client)
    return f"{cls.__module__}.{cls.__qualname__}"


def _validate_key_prefix(key_prefix: object) -> str:
    if not isinstance(key_prefix, str):
        raise ConfigurationError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
    if len(key_prefix) > MAX_KEY_PREFIX_LENGTH:
        raise ConfigurationError(
            f"key_prefix is {len(key_prefix)} characters long; the limit is {MAX_KEY_PREFIX_LENGTH}"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in key_prefix):
        raise ConfigurationError(
            f"key_prefix {key_prefix!r} holds whitespace or control characters; use printable "
            "characters only, such as the default 'starlette_session:'"
        )
    return key_prefix


class _RedisBase(SessionBackend):
    """What the sync and asyncio backends share: configuration, keys, values, errors."""

    extra: ClassVar[str] = "redis"

    #: The BackendType member name, for messages.
    _member: ClassVar[str] = ""
    #: How to make a suitable client, for messages.
    _client_hint: ClassVar[str] = ""

    def __init__(self, client: Any, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        if client is None:
            raise ConfigurationError(
                f"BackendType.{self._member} needs a Redis client: pass backend_client={self._client_hint} "
                "(pip install 'starlette-session[redis]')"
            )
        redis = _import_redis()
        self._check_client(redis, client)
        self.key_prefix = _validate_key_prefix(key_prefix)
        self._client = client
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.RedisError,
            redis.exceptions.RedisClusterException,
        )
        self._encoding: str | None = None

    @property
    def client(self) -> Any:
        """The client given to the constructor (owned, and closed, by its creator)."""
        return self._client

    #: Whether this backend takes redis.asyncio clients (else sync ones).
    _is_asyncio: ClassVar[bool] = False

    @classmethod
    def _fits(cls, redis: Any, client: object) -> bool:
        return (_is_async_client if cls._is_asyncio else _is_sync_client)(redis, client)

    @classmethod
    def accepts(cls, client: object) -> bool:
        """Return whether ``client`` is a redis-py client of the kind (sync or asyncio) this takes."""
        if not _from_module(client, "redis"):
            return False
        try:
            redis = _import_redis()
        except MissingDependencyError:
            return False
        return cls._fits(redis, client)

    @classmethod
    def _check_client(cls, redis: Any, client: object) -> None:
        if cls._fits(redis, client):
            return
        if (_is_sync_client if cls._is_asyncio else _is_async_client)(redis, client):
            kind, member, backend, hint = (
                ("a sync", "redis", "RedisBackend", "a redis.asyncio.Redis(...)")
                if cls._is_asyncio
                else ("an asyncio", "aioRedis", "AsyncRedisBackend", "a sync redis.Redis(...)")
            )
            raise ConfigurationError(
                f"{_describe(client)} is {kind} client; use backend_type=BackendType.{member} "
                f"({backend}) for it, or pass {hint}"
            )
        raise cls._wrong_client(redis, client)

    @classmethod
    def _wrong_client(cls, redis: Any, client: object) -> ConfigurationError:
        if _is_pipeline(redis, client):
            return ConfigurationError(
                f"BackendType.{cls._member} needs a Redis client, not a pipeline: pass the client "
                "the pipeline was made from"
            )
        if _from_module(client, "aioredis"):
            return ConfigurationError(
                "aioredis clients are not supported (aioredis became redis.asyncio); pass "
                "backend_client=redis.asyncio.Redis(...) with backend_type=BackendType.aioRedis"
            )
        return ConfigurationError(
            f"BackendType.{cls._member} needs a {cls._client_hint.removesuffix('(...)')}, "
            f"not {_describe(client)}"
        )

    @classmethod
    def from_client(cls, client: Any) -> SessionBackend:
        """Build the backend around ``backend_client``, with the default key prefix.

        Raises:
            ConfigurationError: ``client`` is ``None`` or not a client this backend takes.
            MissingDependencyError: redis-py is not installed.
        """
        return cls(client)

    def _key(self, session_id: str) -> str:
        return self.key_prefix + session_id

    def _as_bytes(self, value: bytes | str | None) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        # A ``decode_responses=True`` client decoded the bytes with its own encoding.
        if self._encoding is None:
            try:
                self._encoding = str(self._client.get_encoder().encoding)
            except AttributeError:
                self._encoding = "utf-8"
        return value.encode(self._encoding)

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a client method: in a worker thread (sync client) or awaited (asyncio client)."""
        raise NotImplementedError  # pragma: no cover

    async def read(self, session_id: str) -> bytes | None:
        try:
            value = await self._call(self._client.get, self._key(session_id))
        except UnicodeDecodeError:
            return None
        except self._errors as exc:
            raise self._failure("GET", "reading a session", exc) from exc
        return self._as_bytes(value)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        try:
            await self._call(self._client.set, self._key(session_id), data, ex=ttl)
        except self._errors as exc:
            raise self._failure("SET", "writing a session", exc) from exc

    async def remove(self, session_id: str) -> None:
        # Not ``client.delete``: the cluster clients build a pipeline for it, bypassing the
        # user's ``execute_command``.
        try:
            await self._call(self._client.execute_command, "DEL", self._key(session_id))
        except self._errors as exc:
            raise self._failure("DEL", "removing a session", exc) from exc

    async def touch(self, session_id: str, ttl: int) -> bool:
        try:
            existed = await self._call(self._client.expire, self._key(session_id), ttl)
        except self._errors as exc:
            raise self._failure("EXPIRE", "renewing a session's expiry", exc) from exc
        return bool(existed)

    def _failure(self, command: str, purpose: str, exc: BaseException) -> BackendError:
        # The key is left out on purpose: it holds the session id, a credential.
        return BackendError(f"Redis {command} failed while {purpose}: {type(exc).__name__}: {exc}")


class RedisBackend(_RedisBase):
    """Sessions in Redis through a sync ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    Each blocking call runs in a worker thread (``run_sync``), so the event loop never waits
    on Redis.

    Args:
        client: the sync client; the backend uses it and never closes it.
        key_prefix: prepended to every session id to form the Redis key; ``""`` uses the bare
            id, as starlette-session 0.4.3 did.

    Raises:
        ConfigurationError: ``client`` is not a sync redis-py client, or ``key_prefix`` is
            invalid.
        MissingDependencyError: redis-py is not installed.
    """

    _member: ClassVar[str] = "redis"
    _client_hint: ClassVar[str] = "redis.Redis(...)"
    _is_asyncio: ClassVar[bool] = False

    if TYPE_CHECKING:
        _client: redis_module.Redis | redis_module.RedisCluster

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_sync(method, *args, **kwargs)


class AsyncRedisBackend(_RedisBase):
    """Sessions in Redis through ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.

    Args:
        client: the asyncio client; the backend uses it and never closes it.
        key_prefix: prepended to every session id to form the Redis key; ``""`` uses the bare
            id, as starlette-session 0.4.3 did.

    Raises:
        ConfigurationError: ``client`` is not an asyncio redis-py client, or ``key_prefix`` is
            invalid.
        MissingDependencyError: redis-py is not installed.
    """

    _member: ClassVar[str] = "aioRedis"
    _client_hint: ClassVar[str] = "redis.asyncio.Redis(...)"
    _is_asyncio: ClassVar[bool] = True

    if TYPE_CHECKING:
        _client: aioredis_module.Redis | aioredis_module.RedisCluster

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await method(*args, **kwargs)
