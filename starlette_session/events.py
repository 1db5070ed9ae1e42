"""Lifecycle events: what happened to a session, for metrics, traces and audit logs.

``SessionMiddleware(..., events=observer)`` calls ``observer(event)`` with a ``SessionEvent``,
for server-side sessions (cookie sessions have no store and emit none), for each of: a session
created, loaded, saved, regenerated, destroyed (logout), revoked (by ``logout_other_sessions()``
in a request), expired or unknown on load, a rejected cookie, a store error, and every store
call the breaker let through (``"store_call"``, with its operation, duration and, when it
failed, its error). ``operation`` is the middleware's wording of the call (``"read a
session"``), the same in ``store_call`` and ``store_error``. An event never holds a session id:
at most the ``handle``, the store's key, which cannot be turned into a cookie. The observer is
a plain (not async) callable; one that raises is logged and never breaks the request. It runs
on the event loop, inline: keep it quick (increment a counter, record a span), or hand the
event off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger("starlette_session")

EventType = Literal[
    "created",
    "loaded",
    "saved",
    "regenerated",
    "destroyed",
    "revoked",
    "expired",
    "rejected_cookie",
    "store_error",
    "store_call",
]


@dataclass(frozen=True)
class SessionEvent:
    """One thing that happened to a session.

    Attributes:
        type: what happened.
        backend: the store's name (``"cookie"`` for cookie sessions).
        duration: seconds the store call behind the event took (``None`` if there was none).
        handle: the session's revocation handle (its store key), when known; never its id.
        operation: for ``store_call`` and ``store_error``, what the call did (``"read a session"``).
        error: for ``store_error`` and a failed ``store_call``, the error's text (which never
            holds an id).
    """

    type: EventType
    backend: str
    duration: float | None = None
    handle: str | None = None
    operation: str | None = None
    error: str | None = None


#: What ``events=`` takes: a callable receiving each ``SessionEvent``.
Observer = Callable[[SessionEvent], object]


def emit(observer: Observer | None, event: SessionEvent) -> None:
    """Hand ``event`` to ``observer``; an error it raises is logged, never raised."""
    if observer is None:
        return
    try:
        observer(event)
    except Exception:
        logger.exception("the session events observer raised on a %r event; the request goes on", event.type)
