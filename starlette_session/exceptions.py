"""The package's exceptions: one base class, one subclass per kind of failure."""

from __future__ import annotations


class StarletteSessionError(Exception):
    """Base class of every error this package raises."""


class ConfigurationError(StarletteSessionError, ValueError):
    """The middleware or a backend was configured wrongly; raised at start-up."""


class UnknownPredefinedBackend(ConfigurationError):  # noqa: N818 - 0.4.3's public name
    """``backend_type`` names no backend this package ships."""


class MissingDependencyError(StarletteSessionError, ImportError):
    """An optional library that a backend needs is not installed.

    The message names the pip extra that installs it.
    """

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package!r} is not installed; install it with: pip install 'starlette-session[{extra}]'"
        )


class BackendError(StarletteSessionError):
    """The session store failed (unreachable, timed out, refused a command).

    Raised instead of carrying on with an empty session, so that a store outage
    never makes the middleware overwrite real session data. Its text never holds a
    session id. ``backend`` and ``operation`` name the store and what failed.
    """

    backend: str = ""
    operation: str = ""


class SessionConflictError(BackendError):
    """``concurrency="merge"`` gave up: the record kept changing under every attempt to update it."""


class SessionTooLargeError(StarletteSessionError):
    """The session does not fit in the cookie(s) it must be sent in."""

    def __init__(self, size: int, limit: int, hint: str = "") -> None:
        self.size = size
        self.limit = limit
        message = f"session cookie would be {size} bytes, over the limit of {limit} bytes"
        super().__init__(f"{message}; {hint}" if hint else message)


class ResponseStartedError(StarletteSessionError, RuntimeError):
    """``regenerate_session()`` was called after the response started: no new id can reach the client."""
