"""Sessions for Starlette and FastAPI: a drop-in ``SessionMiddleware`` with cookie or server-side storage."""

from __future__ import annotations

from starlette_session.backends import BackendType, MemcacheJSONSerde
from starlette_session.events import SessionEvent
from starlette_session.exceptions import (
    BackendError,
    ConfigurationError,
    MissingDependencyError,
    ResponseStartedError,
    SessionConflictError,
    SessionTooLargeError,
    StarletteSessionError,
    UnknownPredefinedBackend,
)
from starlette_session.interfaces import ISessionBackend, SessionBackend
from starlette_session.middleware import SessionMiddleware, session_exempt
from starlette_session.session import Session, SessionNotAvailableError, get_session, regenerate_session
from starlette_session.users import SessionInfo

__version__ = "1.0.0"

__all__ = [
    "BackendError",
    "BackendType",
    "ConfigurationError",
    "ISessionBackend",
    "MemcacheJSONSerde",
    "MissingDependencyError",
    "ResponseStartedError",
    "Session",
    "SessionBackend",
    "SessionConflictError",
    "SessionEvent",
    "SessionInfo",
    "SessionMiddleware",
    "SessionNotAvailableError",
    "SessionTooLargeError",
    "StarletteSessionError",
    "UnknownPredefinedBackend",
    "get_session",
    "regenerate_session",
    "session_exempt",
]
