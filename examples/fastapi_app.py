"""FastAPI: the session as a dependency (``SessionDep``), login on a new id (``RegeneratedSessionDep``)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

from starlette_session import SessionMiddleware
from starlette_session.backends import BackendType
from starlette_session.fastapi import RegeneratedSessionDep, SessionDep

app = FastAPI()
app.add_middleware(
    SessionMiddleware,
    secret_key=os.environ.get("SECRET_KEY", "example-only-change-me"),
    backend_type=BackendType.memory,
)


@app.get("/")
async def index(session: SessionDep) -> dict[str, Any]:
    count = session.get("count", 0) + 1
    session["count"] = count
    return {"count": count, "user": session.get("user")}


@app.post("/login/{user}")
async def login(user: str, session: RegeneratedSessionDep) -> dict[str, Any]:
    # The session is already moved to a new id (against session fixation); its data is kept.
    session["user"] = user
    return {"user": user}


@app.get("/logout")
async def logout(session: SessionDep) -> dict[str, Any]:
    session.clear()
    return {"count": 0}
