"""``ISessionBackend``: starlette-session 0.4.3's backend contract, unchanged.

A user's class written for 0.4.3 works as ``custom_session_backend``. ``SessionBackend``, the
base of the shipped backends, lives in ``starlette_session.backends.base`` and can still be
imported from here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette_session.backends.base import SessionBackend

__all__ = ["ISessionBackend", "SessionBackend"]


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


def __getattr__(name: str) -> Any:
    # ``SessionBackend`` lives in ``backends/base.py``; this path is kept for imports written for 1.0.
    if name == "SessionBackend":
        from starlette_session.backends.base import SessionBackend  # noqa: PLC0415 - avoids an import cycle

        return SessionBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
