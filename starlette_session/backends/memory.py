"""In-process memory backend: for tests, demos and single-process apps.

Records live in a dict in this process, so they are lost on restart and not shared between
worker processes. Expiry is checked on read; the store is bounded by ``max_entries``, past
which the records closest to expiry are evicted first.

Every operation runs on the event loop without awaiting between its check and its change,
so ``create``, ``replace`` and ``compare_and_swap`` are atomic with respect to other requests.
"""

from __future__ import annotations

import heapq
import time
from typing import Any

from starlette_session.backends.base import SessionBackend
from starlette_session.exceptions import ConfigurationError


class MemoryBackend(SessionBackend):
    """Sessions in a dict of this process, with expiry and a size bound.

    Args:
        max_entries: the most records kept; writing past it evicts the records that
            expire soonest.
    """

    name = "memory"

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ConfigurationError("MemoryBackend(max_entries=...) must be at least 1")
        self.max_entries = max_entries
        self._data: dict[str, tuple[bytes, float]] = {}

    @classmethod
    def from_client(cls, client: Any) -> MemoryBackend:
        if client is None:
            return cls()
        if isinstance(client, int) and not isinstance(client, bool):
            return cls(max_entries=client)
        raise ConfigurationError(
            "BackendType.memory takes no backend_client (or an int: the maximum number of sessions)"
        )

    def __len__(self) -> int:
        return len(self._data)

    def _live(self, session_id: str) -> bytes | None:
        record = self._data.get(session_id)
        if record is None:
            return None
        data, expires = record
        if expires <= time.monotonic():
            return None
        return data

    def _store(self, session_id: str, data: bytes, ttl: int) -> None:
        if session_id not in self._data and len(self._data) >= self.max_entries:
            self._evict()
        self._data[session_id] = (bytes(data), time.monotonic() + ttl)

    async def read(self, session_id: str) -> bytes | None:
        # A read never writes: an expired record is left for eviction or delete_expired.
        return self._live(session_id)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        self._store(session_id, data, ttl)

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        if self._live(session_id) is not None:
            return False
        self._store(session_id, data, ttl)
        return True

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        if self._live(session_id) is None:
            return False
        self._store(session_id, data, ttl)
        return True

    async def compare_and_swap(self, session_id: str, version: object, data: bytes, ttl: int) -> bool:
        if self._live(session_id) != version:
            return False
        self._store(session_id, data, ttl)
        return True

    async def remove(self, session_id: str) -> None:
        self._data.pop(session_id, None)

    async def touch(self, session_id: str, ttl: int) -> bool:
        data = self._live(session_id)
        if data is None:
            return False
        self._data[session_id] = (data, time.monotonic() + ttl)
        return True

    async def delete_expired(self) -> int:
        return self._delete_expired_now()

    def _evict(self) -> None:
        # Drop expired records first; if none were, drop the tenth that expires soonest,
        # so a full store costs one sort per tenth of its size, not one per write.
        if self._delete_expired_now():
            return
        count = max(1, self.max_entries // 10)
        soonest = heapq.nsmallest(count, self._data.items(), key=lambda item: item[1][1])
        for key, _ in soonest:
            del self._data[key]

    def _delete_expired_now(self) -> int:
        now = time.monotonic()
        expired = [key for key, (_, expires) in self._data.items() if expires <= now]
        for key in expired:
            del self._data[key]
        return len(expired)
