"""``BackendType``: the registry of shipped backends, and 0.4.3's import paths.

Each member maps to the backend class that serves it; the class module is imported only
when the member is used, so importing the package never imports redis, SQLAlchemy, etc.
Adding a backend is its own module plus one line in ``_REGISTRY``.
"""

from __future__ import annotations

import importlib
from enum import Enum
from typing import TYPE_CHECKING, Any

from starlette_session.exceptions import ConfigurationError, UnknownPredefinedBackend
from starlette_session.serializers import MemcacheJSONSerde

if TYPE_CHECKING:
    from starlette_session.backends.base import SessionBackend

__all__ = ["BackendType", "MemcacheJSONSerde", "backend_for_client", "create_backend"]


class BackendType(Enum):
    """The backends that ``SessionMiddleware(backend_type=...)`` can build from a client."""

    # starlette-session 0.4.3's members, unchanged.
    redis = "redis"
    aioRedis = "aioRedis"  # noqa: N815 - 0.4.3's public name
    cookie = "cookie"
    memcache = "memcache"
    aioMemcache = "aioMemcache"  # noqa: N815 - 0.4.3's public name
    # Added by this package.
    memory = "memory"
    file = "file"
    sqlalchemy = "sqlalchemy"
    database = "database"  # an alias: the same backend as ``sqlalchemy``

    def backend_class(self) -> type[SessionBackend] | None:
        """Return the class serving this member (``None`` for ``cookie``: no store)."""
        target = _REGISTRY[self]
        if target is None:
            return None
        module_name, _, class_name = target.partition(":")
        module = importlib.import_module(module_name)
        cls: type[SessionBackend] = getattr(module, class_name)
        return cls


# member -> "module:Class" of the backend; None: the data lives in the cookie.
_REGISTRY: dict[BackendType, str | None] = {
    BackendType.cookie: None,
    BackendType.memory: "starlette_session.backends.memory:MemoryBackend",
    BackendType.redis: "starlette_session.backends.redis:RedisBackend",
    BackendType.aioRedis: "starlette_session.backends.redis:AsyncRedisBackend",
    BackendType.memcache: "starlette_session.backends.memcache:MemcacheBackend",
    BackendType.aioMemcache: "starlette_session.backends.memcache:AioMemcacheBackend",
    BackendType.file: "starlette_session.backends.file:FileBackend",
    BackendType.sqlalchemy: "starlette_session.backends.sqlalchemy:SQLAlchemyBackend",
    BackendType.database: "starlette_session.backends.sqlalchemy:SQLAlchemyBackend",
}

# Tried in this order when only a client is given; the first class that accepts it wins.
_DETECTION_ORDER = (
    BackendType.aioRedis,
    BackendType.redis,
    BackendType.aioMemcache,
    BackendType.memcache,
    BackendType.sqlalchemy,
    BackendType.file,
)


def _member(backend_type: BackendType | str) -> BackendType:
    if isinstance(backend_type, BackendType):
        return backend_type
    try:
        return BackendType(backend_type)
    except ValueError:
        known = ", ".join(member.value for member in BackendType)
        raise UnknownPredefinedBackend(
            f"unknown backend_type {backend_type!r}; use one of: {known}, "
            "or pass your own ISessionBackend as custom_session_backend"
        ) from None


def create_backend(backend_type: BackendType | str, client: Any) -> SessionBackend | None:
    """Build the backend for ``backend_type`` around ``client``.

    Returns:
        The backend, or ``None`` for ``BackendType.cookie``.

    Raises:
        UnknownPredefinedBackend: ``backend_type`` is not a ``BackendType``.
        ConfigurationError: the client does not suit the backend.
        MissingDependencyError: the backend's library is not installed.
    """
    cls = _member(backend_type).backend_class()
    if cls is None:
        return None
    return cls.from_client(client)


def backend_for_client(client: object) -> SessionBackend:
    """Pick and build the backend from the type of ``client`` alone.

    The rule: a ``redis.asyncio`` client gives ``aioRedis``, a ``redis`` client ``redis``, an
    ``aiomcache.Client`` ``aioMemcache``, a pymemcache client ``memcache``, a SQLAlchemy
    ``Engine`` or ``AsyncEngine`` ``sqlalchemy``, and a ``pathlib.Path`` ``file``.

    Raises:
        ConfigurationError: no shipped backend recognises the client.
    """
    for member in _DETECTION_ORDER:
        cls = member.backend_class()
        if cls is not None and cls.accepts(client):
            return cls.from_client(client)
    raise ConfigurationError(
        f"cannot tell which backend to use for a backend_client of type "
        f"{type(client).__module__}.{type(client).__qualname__}; pass backend_type=BackendType.<name> "
        "or a backend instance as custom_session_backend"
    )
