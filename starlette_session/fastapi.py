"""FastAPI dependencies that hand an endpoint its session.

Import this module only in FastAPI apps: it imports ``fastapi``, which the package itself
never does.

```python
from fastapi import FastAPI

from starlette_session import SessionMiddleware
from starlette_session.fastapi import SessionDep

app = FastAPI()
app.add_middleware(SessionMiddleware, secret_key="change me")


@app.get("/")
def index(session: SessionDep) -> dict[str, int]:
    session["views"] = session.get("views", 0) + 1
    return {"views": session["views"]}
```

The dependencies are ``async def`` so that FastAPI resolves them on the event loop instead of
sending each one to its thread pool; they work for sync and async endpoints alike, and for
WebSocket endpoints too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from starlette_session.exceptions import ConfigurationError
from starlette_session.session import Session, SessionNotAvailableError, regenerate_session

__all__ = ["RegeneratedSessionDep", "SessionDep", "regenerated_session", "session_dependency"]


async def session_dependency(connection: HTTPConnection) -> Session:
    """Return the session of the request (or WebSocket) being handled.

    Args:
        connection: the request or WebSocket, given by FastAPI.

    Returns:
        The `Session` that `SessionMiddleware` loaded, the same object as `request.session`.

    Raises:
        SessionNotAvailableError: no session middleware ran for this request: it is not
            installed, or the path is excluded, or the endpoint is exempt.
        ConfigurationError: another session middleware (such as Starlette's) put its own
            session in place of a `starlette_session.Session`.
    """
    session = connection.scope.get("session")
    if session is None:
        raise SessionNotAvailableError("session_dependency")
    if not isinstance(session, Session):
        kind = type(session)
        raise ConfigurationError(
            f"the session for {connection.url.path!r} is a {kind.__module__}.{kind.__qualname__}, not a "
            "starlette_session.Session: another session middleware (Starlette's?) ran instead of "
            "starlette_session.SessionMiddleware; use only the latter"
        )
    return session


async def regenerated_session(session: Annotated[Session, Depends(session_dependency)]) -> Session:
    """Return the session after moving it to a new id, as `regenerate_session()` does.

    Use it on the endpoint that logs a user in, against session fixation. The data is kept;
    call `session.clear()` in the endpoint to start empty. It regenerates whenever the
    endpoint is called, so a failed login gets a new id too, which does no harm.

    Args:
        session: the request's session, from `session_dependency`.

    Returns:
        The same session, marked to be saved under a new id when the response starts.

    Raises:
        SessionNotAvailableError: no session middleware ran for this request.
    """
    regenerated = regenerate_session()
    if regenerated is not session:  # pragma: no cover - the middleware sets both to one object
        raise ConfigurationError("the request's session is not the one SessionMiddleware is tracking")
    return session


SessionDep = Annotated[Session, Depends(session_dependency)]
"""An endpoint (or dependency) parameter typed `SessionDep` receives the request's `Session`."""

RegeneratedSessionDep = Annotated[Session, Depends(regenerated_session)]
"""A parameter typed `RegeneratedSessionDep` receives the session, moved to a new id: use it at login."""
