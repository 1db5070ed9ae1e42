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
    Every operation is one command on the client object you passed (never on a pipeline made
    from it), through the client's own method, so a spy or wrapper on your client sees it: a
    read is one ``GET`` (``client.get``), a save of a loaded session one ``SET key value EX ttl
    XX`` (``client.set``; replace only: a record removed meanwhile stays removed), a new
    session one ``SET ... NX``, a removal one ``DEL`` (``client.delete``; the cluster clients'
    ``delete`` builds a pipeline, so for them ``DEL`` goes through ``execute_command``),
    rolling expiry one ``EXPIRE``, and a merge-mode update one ``EVAL`` of a compare-and-set
    script. Redis expires records by itself; ``delete_expired`` returns 0. The backend never
    closes your client.

See ``docs/backends/redis.md`` for keys, values, errors and limits.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from starlette_session.backends.base import DEFAULT_KEY_PREFIX, SessionBackend
from starlette_session.exceptions import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import redis as redis_module
    import redis.asyncio as aioredis_module

__all__ = ["DEFAULT_KEY_PREFIX", "MAX_KEY_PREFIX_LENGTH", "AsyncRedisBackend", "RedisBackend"]


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
    name = "Redis"

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
        self.store_errors = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
        self.blocking = not self._is_asyncio
        self._cluster = isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))
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

    async def _command(
        self, operation: str, method: Callable[..., Any], key: str, *args: Any, **kwargs: Any
    ) -> Any:
        return await self.call(operation, method, key, *args, redact=(key,), **kwargs)

    async def read(self, session_id: str) -> bytes | None:
        key = self._key(session_id)
        try:
            value = await self._command("GET a session", self._client.get, key)
        except UnicodeDecodeError:  # a decode_responses client met foreign bytes: not our record
            return None
        return self._as_bytes(value)

    async def read_for_update(self, session_id: str) -> tuple[bytes, Any] | None:
        data = await self.read(session_id)
        return None if data is None else (data, data)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        await self._command("SET a session", self._client.set, self._key(session_id), data, ex=ttl)

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        key = self._key(session_id)
        return bool(await self._command("SET NX a new session", self._client.set, key, data, ex=ttl, nx=True))

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        key = self._key(session_id)
        return bool(await self._command("SET XX a session", self._client.set, key, data, ex=ttl, xx=True))

    async def compare_and_swap(self, session_id: str, version: Any, data: bytes, ttl: int) -> bool:
        key = self._key(session_id)
        swapped = await self._command(
            "EVAL compare-and-set on a session",
            self._client.eval,
            _COMPARE_AND_SET,
            1,
            key,
            version,
            data,
            ttl,
        )
        return bool(swapped)

    async def remove(self, session_id: str) -> None:
        key = self._key(session_id)
        if self._cluster:
            await self._command("DEL a session", self._client.execute_command, "DEL", key)
        else:
            await self._command("DEL a session", self._client.delete, key)

    async def touch(self, session_id: str, ttl: int) -> bool:
        key = self._key(session_id)
        return bool(await self._command("EXPIRE a session", self._client.expire, key, ttl))

    async def read_043(self, session_id: str) -> bytes | None:
        """Return the JSON of the record starlette-session 0.4.3 pickled under the bare id."""
        from starlette_session.legacy import load_043_record  # noqa: PLC0415 - only with legacy_043

        value = self._as_bytes(await self._command("GET a 0.4.3 session", self._client.get, session_id))
        record = None if value is None else load_043_record(value)
        return None if record is None else self.serializer.dumps(record)

    async def remove_043(self, session_id: str) -> None:
        if self._cluster:
            await self._command("DEL a 0.4.3 session", self._client.execute_command, "DEL", session_id)
        else:
            await self._command("DEL a 0.4.3 session", self._client.delete, session_id)


# KEYS[1]: the session key; ARGV: the bytes read, the new bytes, the TTL in seconds.
_COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""


class RedisBackend(_RedisBase):
    """Sessions in Redis through a sync ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    Each blocking call runs in a worker thread (``starlette_session._bridge.run_sync``, the
    package's own thread pool), so the event loop never waits on Redis.

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
