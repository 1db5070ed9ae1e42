"""Expiry in one place: ``max_age`` becomes the TTL form each store needs."""

from __future__ import annotations

import time

#: Used as the store TTL when ``max_age`` is ``None`` (a browser-session cookie): 14 days.
DEFAULT_FALLBACK_TTL = 14 * 24 * 60 * 60

#: memcached reads an expiry over 30 days as a Unix timestamp.
MEMCACHED_MAX_RELATIVE = 30 * 24 * 60 * 60


def ttl_seconds(max_age: int | None, fallback: int = DEFAULT_FALLBACK_TTL) -> int:
    """Return the store TTL in whole seconds (always at least 1) for a cookie ``max_age``.

    Args:
        max_age: the cookie's ``max_age``; ``None`` means a browser-session cookie.
        fallback: the TTL used when ``max_age`` is ``None``.

    Returns:
        A TTL of at least one second: Redis refuses ``ex=0`` and memcached reads 0 as "never".
    """
    ttl = fallback if max_age is None else max_age
    return max(1, int(ttl))


def expires_at(ttl: int, now: float | None = None) -> float:
    """Return the Unix time at which a record written now with ``ttl`` expires."""
    return (time.time() if now is None else now) + ttl


def memcached_exptime(ttl: int, now: float | None = None) -> int:
    """Return memcached's ``exptime`` for ``ttl``: relative up to 30 days, absolute beyond."""
    if ttl <= MEMCACHED_MAX_RELATIVE:
        return ttl
    return int(expires_at(ttl, now))
