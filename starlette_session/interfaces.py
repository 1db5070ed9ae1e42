"""Backend contracts.

``ISessionBackend`` is starlette-session 0.4.3's contract, unchanged: a user's class written
for 0.4.3 works as ``custom_session_backend``. ``SessionBackend`` is the base of the backends
this package ships: a dumb byte store with a TTL in seconds, which knows nothing of cookies,
signing or HTTP. It implements ``ISessionBackend`` on top of three byte-level methods, so every
shipped backend can also be used directly with dicts, outside a request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from starlette_session.exceptions import ConfigurationError
from starlette_session.expiry import ttl_seconds
from starlette_session.serializers import JSON, Serializer


class ISessionBackend(ABC):
    """starlette-session 0.4.3's backend contract: async dict storage by key."""

    @abstractmethod
    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the session stored under ``key``, or ``None`` when there is none."""
        raise NotImplementedError  # pragma: no cover

    @abstractmethod
    async def set(self, key: str, value: dict[str, Any], exp: int | None) -> str | None:
        """Store ``value`` under ``key`` for ``exp`` seconds (``None``: the backend's default)."""
        raise NotImplementedError  # pragma: no cover

    @abstractmethod
    async def delete(self, key: str) -> Any:
        """Remove the session stored under ``key``; a missing key is not an error."""
        raise NotImplementedError  # pragma: no cover


class SessionBackend(ISessionBackend):
    """Base class of the shipped backends: bytes under an id, with a TTL in whole seconds.

    Subclasses implement ``read``, ``write`` and ``remove``; they may also implement the
    optional capabilities ``touch`` (rolling expiry without rewriting the data) and
    ``delete_expired`` (for stores that do not expire records by themselves), and
    ``aclose``. Every method raises ``BackendError`` when the store fails.

    Session ids reaching these methods have been validated by the caller
    (``starlette_session.ids.is_valid_session_id``).
    """

    #: The pip extra that installs this backend's client library ("" for none).
    extra: ClassVar[str] = ""

    serializer: Serializer = JSON

    #: TTL used by ``set`` when it is given ``exp=None``.
    default_ttl: int = ttl_seconds(None)

    @abstractmethod
    async def read(self, session_id: str) -> bytes | None:
        """Return the bytes stored under ``session_id``, or ``None`` if missing or expired."""

    @abstractmethod
    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        """Store ``data`` under ``session_id``, replacing any record, expiring in ``ttl`` seconds."""

    @abstractmethod
    async def remove(self, session_id: str) -> None:
        """Delete the record for ``session_id``; a missing record is not an error."""

    async def touch(self, session_id: str, ttl: int) -> bool:
        """Reset the record's expiry to ``ttl`` seconds; return whether the record exists.

        The default reads and rewrites the record; stores with a native command override it.
        """
        data = await self.read(session_id)
        if data is None:
            return False
        await self.write(session_id, data, ttl)
        return True

    async def delete_expired(self) -> int:
        """Delete expired records and return how many were deleted.

        Stores that expire records by themselves (Redis, memcached) return 0.
        """
        return 0

    async def aclose(self) -> None:
        """Release resources the backend created itself (never the user's client)."""

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

    # -- 0.4.3's dict API, for use outside a request -------------------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        data = await self.read(key)
        if data is None:
            return None
        try:
            return self.serializer.loads(data)
        except ValueError:
            return None

    async def set(self, key: str, value: dict[str, Any], exp: int | None = None) -> str | None:
        ttl = self.default_ttl if exp is None else ttl_seconds(exp)
        await self.write(key, self.serializer.dumps(value), ttl)
        return None

    async def delete(self, key: str) -> Any:
        await self.remove(key)
