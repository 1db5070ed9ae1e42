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
    Every operation is one command, through a client method (never on a pipeline): on the
    client object you passed, or, for a sync ``redis.Redis`` that allows it, on its asyncio
    twin (``RedisBackend``; a spy or wrapper set on your client's methods keeps the commands on
    your client, so it sees them). A
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

import asyncio
import inspect
import types
import weakref
from collections.abc import AsyncIterator, Awaitable
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

    def _command(self, operation: str, method: str, key: str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Send one command: ``method`` is the client method's name (``"get"``, ``"set"``...).

        Returns ``call``'s coroutine rather than awaiting it, so that a command's await chain
        has no frame of this method to pass through each time the client's call resumes.
        """
        return self.call(operation, getattr(self._client, method), key, *args, redact=(key,), **kwargs)

    async def read(self, session_id: str) -> bytes | None:
        key = self._key(session_id)
        try:
            value = await self._command("GET a session", "get", key)
        except UnicodeDecodeError:  # a decode_responses client met foreign bytes: not our record
            return None
        return self._as_bytes(value)

    async def read_for_update(self, session_id: str) -> tuple[bytes, Any] | None:
        data = await self.read(session_id)
        return None if data is None else (data, data)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        await self._command("SET a session", "set", self._key(session_id), data, ex=ttl)

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        key = self._key(session_id)
        return bool(await self._command("SET NX a new session", "set", key, data, ex=ttl, nx=True))

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        key = self._key(session_id)
        return bool(await self._command("SET XX a session", "set", key, data, ex=ttl, xx=True))

    async def compare_and_swap(self, session_id: str, version: Any, data: bytes, ttl: int) -> bool:
        key = self._key(session_id)
        swapped = await self._command(
            "EVAL compare-and-set on a session",
            "eval",
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
            await self._command("DEL a session", "execute_command", "DEL", key)
        else:
            await self._command("DEL a session", "delete", key)

    async def touch(self, session_id: str, ttl: int) -> bool:
        key = self._key(session_id)
        return bool(await self._command("EXPIRE a session", "expire", key, ttl))

    async def read_043(self, session_id: str) -> bytes | None:
        """Return the JSON of the record starlette-session 0.4.3 pickled under the bare id."""
        from starlette_session.legacy import load_043_record  # noqa: PLC0415 - only with legacy_043

        value = self._as_bytes(await self._command("GET a 0.4.3 session", "get", session_id))
        record = None if value is None else load_043_record(value)
        return None if record is None else self.serializer.dumps(record)

    async def remove_043(self, session_id: str) -> None:
        if self._cluster:
            await self._command("DEL a 0.4.3 session", "execute_command", "DEL", session_id)
        else:
            await self._command("DEL a 0.4.3 session", "delete", session_id)


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

    The event loop never waits on Redis: when the client allows it (``twin_refusal`` is
    ``None``), commands go through its *asyncio twin*, a ``redis.asyncio.Redis`` with the
    client's connection settings (one per event loop, closed when that loop shuts down or by
    ``aclose``); otherwise each command runs in a worker thread
    (``starlette_session._bridge.run_sync``). See ``docs/backends/redis.md``.

    Args:
        client: the sync client; the backend uses it and never closes it.
        key_prefix: prepended to every session id to form the Redis key; ``""`` uses the bare
            id, as starlette-session 0.4.3 did.
        asyncio_twin: ``None`` (default): use the twin when the client allows it; ``True``:
            require it; ``False``: always use the worker threads.

    Raises:
        ConfigurationError: ``client`` is not a sync redis-py client, ``key_prefix`` is
            invalid, or ``asyncio_twin=True`` with a client that cannot have a twin.
        MissingDependencyError: redis-py is not installed.
    """

    _member: ClassVar[str] = "redis"
    _client_hint: ClassVar[str] = "redis.Redis(...)"
    _is_asyncio: ClassVar[bool] = False

    if TYPE_CHECKING:
        _client: redis_module.Redis | redis_module.RedisCluster

    def __init__(
        self, client: Any, *, key_prefix: str = DEFAULT_KEY_PREFIX, asyncio_twin: bool | None = None
    ) -> None:
        super().__init__(client, key_prefix=key_prefix)
        #: Why the client cannot have an asyncio twin; ``None`` when it can.
        self.twin_refusal: str | None = _twin_refusal(_import_redis(), client)
        if asyncio_twin and self.twin_refusal is not None:
            raise ConfigurationError(
                f"asyncio_twin=True, but this client cannot have one: {self.twin_refusal}; pass "
                "asyncio_twin=False (or leave it out) to run its commands in worker threads"
            )
        #: Whether commands go through the asyncio twin (under asyncio) rather than worker threads.
        self.uses_twin = asyncio_twin is not False and self.twin_refusal is None
        self._twins: dict[asyncio.AbstractEventLoop, tuple[Any, AsyncIterator[None]]] = {}
        # The loop and twin of the last command, read and written as one tuple (threads may race).
        self._last: tuple[asyncio.AbstractEventLoop | None, Any] = (None, None)

    def _command(self, operation: str, method: str, key: str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        if self.uses_twin:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not asyncio (trio): the worker threads
                pass
            else:
                last_loop, client = self._last
                if last_loop is not loop:
                    return self._first_twin_command(loop, operation, method, key, *args, **kwargs)
                func = getattr(client, method)
                return self.call(operation, func, key, *args, redact=(key,), in_thread=False, **kwargs)
        return super()._command(operation, method, key, *args, **kwargs)

    async def _first_twin_command(
        self,
        loop: asyncio.AbstractEventLoop,
        operation: str,
        method: str,
        key: str,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """The first command on ``loop`` since its twin was last used: find or make the twin first."""
        client = await self._twin_of(loop)
        func = getattr(client, method)
        return await self.call(operation, func, key, *args, redact=(key,), in_thread=False, **kwargs)

    async def asyncio_client(self) -> Any:
        """Return the running event loop's twin, a ``redis.asyncio.Redis``, making it if needed.

        Raises:
            RuntimeError: no asyncio loop is running, or ``uses_twin`` is ``False``.
        """
        if not self.uses_twin:
            raise RuntimeError(
                f"this backend has no asyncio twin: {self.twin_refusal or 'asyncio_twin=False'}"
            )
        return await self._twin_of(asyncio.get_running_loop())

    async def _twin_of(self, loop: asyncio.AbstractEventLoop) -> Any:
        entry = self._twins.get(loop)
        if entry is None:
            for old in list(self._twins):  # a copy: another thread's loop may add its twin meanwhile
                if old.is_closed():  # closed without shutting its async generators down
                    self._twins.pop(old, None)
            client = _make_twin(_import_redis(), self._client)
            # The loop closes this generator when it shuts down (asyncio.run, anyio and uvicorn
            # call ``shutdown_asyncgens``), and with it the twin's connections.
            closer = _close_at_shutdown(weakref.ref(self), loop, client)
            await closer.__anext__()
            for key, (old_loop, _) in list(_CLOSERS.items()):
                if old_loop.is_closed():
                    _CLOSERS.pop(key, None)
            _CLOSERS[id(client)] = (loop, closer)
            entry = self._twins[loop] = (client, closer)
        self._last = (loop, entry[0])
        return entry[0]

    def _forget_twin(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        if self._twins.get(loop, (None,))[0] is client:
            del self._twins[loop]
        if self._last[1] is client:
            self._last = (None, None)

    async def aclose(self) -> None:
        """Close the running loop's asyncio twin, if it has one (never the client itself)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        entry = self._twins.get(loop)
        if entry is not None:
            await entry[1].aclose()  # type: ignore[attr-defined]  # an async generator: closes the twin


#: ``id(twin)`` -> its loop and closing generator, for every open twin of the process.
_CLOSERS: dict[int, tuple[asyncio.AbstractEventLoop, AsyncIterator[None]]] = {}


async def _close_at_shutdown(
    owner: weakref.ref[RedisBackend], loop: asyncio.AbstractEventLoop, client: Any
) -> AsyncIterator[None]:
    """Wait, at a ``yield``, for the loop's shutdown (or ``aclose``); then close ``client``'s pool.

    The generator is kept in ``_CLOSERS``, not only by its backend, and holds the backend
    weakly: a backend dropped while its loop runs leaves its twin open until the loop shuts
    down, rather than to a garbage-collector finalizer whose closing task the loop's shutdown
    could cancel half-way.
    """
    try:
        yield
    finally:
        _CLOSERS.pop(id(client), None)
        backend = owner()
        if backend is not None:
            backend._forget_twin(loop, client)
        await client.connection_pool.disconnect()  # the twin owns its pool; the client does not close it


# What a sync client's connection settings become in its asyncio twin. Copied as they are
# (when the asyncio connection class takes them; else they must have redis-py's default):
_TWIN_COPIED = frozenset(
    {
        "host", "port", "path", "db", "username", "password", "socket_timeout",
        "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options", "socket_read_size",
        "socket_type", "encoding", "encoding_errors", "decode_responses", "health_check_interval",
        "client_name", "lib_name", "lib_version", "protocol", "legacy_responses", "retry_on_timeout",
        "retry_on_error", "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_include_verify_flags",
        "ssl_exclude_verify_flags", "ssl_ca_certs", "ssl_ca_data", "ssl_ca_path",
        "ssl_check_hostname", "ssl_min_version", "ssl_ciphers", "ssl_password", "driver_info",
    }
)  # fmt: skip
# Made afresh by every connection pool, never set by a user: the twin's pool makes its own.
_TWIN_POOL_OWN = frozenset(
    {"himport_registry", "maint_notifications_pool_handler", "orig_host_address", "orig_socket_timeout",
     "orig_socket_connect_timeout"}
)  # fmt: skip
# The client methods the backend calls: one replaced on the instance (a spy) keeps the threads.
_COMMANDS = ("get", "set", "delete", "expire", "eval", "execute_command")


def _same(value: Any, default: Any) -> bool:
    if value is default:
        return True
    try:
        if value == default:
            return True
    except Exception:  # an odd __eq__ just means "not known to be the default"
        return False
    return type(value) is type(default) and getattr(value, "__dict__", None) == getattr(
        default, "__dict__", 0
    )


def _defaults(cls: type) -> dict[str, Any]:
    """The default values of the keyword arguments ``cls.__init__`` names, along its bases."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            for name, parameter in inspect.signature(init).parameters.items():
                if parameter.default is not inspect.Parameter.empty:
                    found[name] = parameter.default
    return found


def _accepted(cls: type) -> set[str]:
    """The keyword arguments ``cls.__init__`` names, along its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return names


def _twin_refusal(redis: Any, client: Any) -> str | None:
    """Return why ``client`` cannot have an asyncio twin that behaves as it does, or ``None``."""
    if type(client) is not redis.Redis:
        return f"{_describe(client)} is not redis.Redis itself (a subclass may behave otherwise)"
    replaced = [name for name in _COMMANDS if name in vars(client)]
    if replaced:
        methods = ", ".join(replaced)
        return f"its {methods} method is replaced on the instance (a spy or wrapper must see each command)"
    if getattr(client, "connection", None) is not None:
        return "it is a single-connection client"
    pool = client.connection_pool
    pools = {
        redis.ConnectionPool: redis.asyncio.ConnectionPool,
        redis.BlockingConnectionPool: redis.asyncio.BlockingConnectionPool,
    }
    if type(pool) not in pools:
        return f"its connection pool is a {type(pool).__qualname__}"
    classes = {
        redis.Connection: redis.asyncio.Connection,
        redis.SSLConnection: redis.asyncio.SSLConnection,
        redis.UnixDomainSocketConnection: redis.asyncio.UnixDomainSocketConnection,
    }
    if pool.connection_class not in classes:
        return f"its connection class is {pool.connection_class.__qualname__}"
    reference = redis.Redis()  # redis-py's defaults (makes no connection)
    if client.response_callbacks != reference.response_callbacks:
        return "its response callbacks are not redis-py's defaults"
    # redis-py's defaults: what a client passes its connections, and the connection class's own.
    defaults = {**_defaults(pool.connection_class), **reference.connection_pool.connection_kwargs}
    accepted = _accepted(classes[pool.connection_class])
    for name, value in pool.connection_kwargs.items():
        if name in _TWIN_POOL_OWN or (name in _TWIN_COPIED and name in accepted):
            continue
        if name == "retry":
            if value is not None and type(value) is not redis.retry.Retry:
                return f"its retry is a {type(value).__qualname__}, not redis.retry.Retry"
            continue
        if name not in defaults and value is None:
            continue
        if not _same(value, defaults.get(name)):
            return f"its connection setting {name!r} has no asyncio counterpart the twin could keep"
    return None


def _make_twin(redis: Any, client: Any) -> Any:
    """Build the asyncio twin of an eligible ``client`` (``_twin_refusal`` said ``None``)."""
    pool = client.connection_pool
    connection_class = {
        redis.Connection: redis.asyncio.Connection,
        redis.SSLConnection: redis.asyncio.SSLConnection,
        redis.UnixDomainSocketConnection: redis.asyncio.UnixDomainSocketConnection,
    }[pool.connection_class]
    accepted = _accepted(connection_class)
    kwargs = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if name in _TWIN_COPIED and name in accepted
    }
    retry = pool.connection_kwargs.get("retry")
    if retry is not None:
        kwargs["retry"] = redis.asyncio.retry.Retry(retry._backoff, retry._retries, retry._supported_errors)
    if type(pool) is redis.BlockingConnectionPool:
        twin_pool = redis.asyncio.BlockingConnectionPool(
            connection_class=connection_class,
            max_connections=pool.max_connections,
            timeout=pool.timeout,
            **kwargs,
        )
    else:
        twin_pool = redis.asyncio.ConnectionPool(
            connection_class=connection_class, max_connections=pool.max_connections, **kwargs
        )
    return redis.asyncio.Redis(connection_pool=twin_pool)


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
