"""The session object, and the helpers that reach it from anywhere inside a request.

How changes are detected, cheaply:

* Every mutating dict method sets ``modified`` (as in Starlette 1.x); every reading method
  sets ``accessed`` (Starlette 1.x sets it in ``request.session``; older Starlette does not,
  so reads are tracked here too).
* A change *inside* a nested value (``session["cart"].append(item)``) sets no flag. So reading
  methods that hand out a list or dict (``session["cart"]``, ``get``, ``setdefault``,
  ``values``, ``items``, ``copy``) set ``exposed``; when a session was exposed but not flagged,
  the middleware serializes it once at response time and compares the bytes with those it was
  loaded from. Sessions whose lists and dicts were never handed out cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from starlette_session.exceptions import ResponseStartedError, StarletteSessionError
from starlette_session.serializers import JSON

_current: ContextVar[Session] = ContextVar("starlette_session")


class SessionNotAvailableError(StarletteSessionError, LookupError):
    """``get_session()`` or ``regenerate_session()`` was called where no request has a session.

    A ``LookupError``, as the bare context variable lookup raised before.
    """

    def __init__(self, function: str) -> None:
        self.function = function
        super().__init__(
            f"{function}() found no session: no SessionMiddleware handled this request. Add the "
            "middleware to the app (Starlette(middleware=[Middleware(SessionMiddleware, secret_key=...)]) "
            "or app.add_middleware(SessionMiddleware, secret_key=...)) and call "
            f"{function}() while a request is handled (in an endpoint, a dependency or code they call), "
            "not at import time or in a task that outlives the request. If the middleware is installed, "
            "check that this path is not excluded (exclude=, @session_exempt) and that its connection "
            "type is in scopes="
        )


def _current_session(function: str) -> Session:
    try:
        return _current.get()
    except LookupError:
        raise SessionNotAvailableError(function) from None


class Session(dict[str, Any]):
    """A dict that records whether it was read (``accessed``) or changed (``modified``)."""

    accessed: bool = False
    modified: bool = False
    #: The serialized form it was loaded from; ``None`` for a new session.
    loaded: bytes | None = None
    #: A list or dict value was handed out, so it may have been changed in place.
    exposed: bool = False
    #: Set by ``regenerate_session()``: move the data to a new id when the response starts.
    regenerate: bool = False
    #: Set by the middleware once the response (or WebSocket) started: no new cookie can be sent.
    response_started: bool = False

    def mark_accessed(self) -> None:
        self.accessed = True

    def mark_modified(self) -> None:
        self.accessed = True
        self.modified = True

    def dump_if_changed(self) -> bytes | None:
        """Return the serialized session if it must be saved, else ``None``.

        It must be saved when flagged, or when it no longer serializes to what it was loaded from.
        """
        if self.modified or self.regenerate:
            return JSON.dumps(self)
        if not self.exposed or self.loaded is None:
            return None
        payload = JSON.dumps(self)
        return None if payload == self.loaded else payload

    def mark_saved(self, payload: bytes | None) -> None:
        """Record that ``payload`` is now what is stored: later changes are detected against it."""
        self.loaded = payload
        self.modified = self.regenerate = self.exposed = False

    # -- reads --------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        value = super().__getitem__(key)
        if isinstance(value, dict | list):
            self.exposed = True
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        value = super().get(key, default)
        if isinstance(value, dict | list):
            self.exposed = True
        return value

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return super().__iter__()

    def __len__(self) -> int:
        self.accessed = True
        return super().__len__()

    def keys(self) -> Any:
        self.accessed = True
        return super().keys()

    def values(self) -> Any:
        self.accessed = self.exposed = True
        return super().values()

    def items(self) -> Any:
        self.accessed = self.exposed = True
        return super().items()

    def copy(self) -> dict[str, Any]:
        self.accessed = self.exposed = True
        return dict(super().items())

    # -- writes (the same set as Starlette 1.x) -----------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self.mark_modified()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        super().__delitem__(key)

    def clear(self) -> None:
        self.mark_modified()
        super().clear()

    def pop(self, key: str, *args: Any) -> Any:
        # A missing key sets no flag, as in Starlette 1.x (whose ``request.session`` marks the
        # access itself; on older Starlette such a pop alone sends no ``Vary: Cookie``).
        if super().__contains__(key):
            self.mark_modified()
        return super().pop(key, *args)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self.mark_modified()
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        if not super().__contains__(key):
            self.mark_modified()
        else:
            self.accessed = True
        value = super().setdefault(key, default)
        if isinstance(value, dict | list):
            self.exposed = True
        return value

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any, /) -> Session:  # type: ignore[override,misc]
        self.mark_modified()
        return super().__ior__(other)


def get_session() -> Session:
    """Return the session of the request being handled, from anywhere inside it.

    Raises:
        SessionNotAvailableError: (a ``LookupError``) called outside a request that went
            through ``SessionMiddleware``.
    """
    return _current_session("get_session")


def regenerate_session(*, clear: bool = False) -> Session:
    """Move the current session to a new id, against session fixation; call it at login.

    The data is kept by default (like Django's ``cycle_key``); ``clear=True`` also empties
    it (like ``flush``). When the response starts, the old record is deleted and a cookie
    with the new id is sent. For cookie sessions, a new cookie is issued.

    Args:
        clear: empty the session too.

    Returns:
        The session.

    Raises:
        SessionNotAvailableError: (a ``LookupError``) called outside a request that went
            through ``SessionMiddleware``.
        ResponseStartedError: the response (or WebSocket) already started: no new id can reach
            the client.
    """
    session = _current_session("regenerate_session")
    if session.response_started:
        raise ResponseStartedError(
            "regenerate_session() was called after the response (or the WebSocket) started: the new "
            "session id could no longer reach the client, and the old one would stay valid. Call it "
            "before returning the response (before a StreamingResponse's body runs, before "
            "websocket.accept())"
        )
    if clear:
        session.clear()
    session.regenerate = True
    session.mark_modified()
    return session
