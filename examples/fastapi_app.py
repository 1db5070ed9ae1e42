"""FastAPI: the session as a dependency, login with ``regenerate_session()``."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from starlette_session import Session, SessionMiddleware, get_session, regenerate_session
from starlette_session.backends import BackendType

app = FastAPI()
app.add_middleware(
    SessionMiddleware,
    secret_key=os.environ.get("SECRET_KEY", "example-only-change-me"),
    backend_type=BackendType.memory,
)

SessionDep = Annotated[Session, Depends(get_session)]


@app.get("/")
async def index(session: SessionDep) -> dict[str, Any]:
    count = session.get("count", 0) + 1
    session["count"] = count
    return {"count": count, "user": session.get("user")}


@app.post("/login/{user}")
async def login(user: str, session: SessionDep) -> dict[str, Any]:
    regenerate_session()
    session["user"] = user
    return {"user": user}


@app.get("/logout")
async def logout(session: SessionDep) -> dict[str, Any]:
    session.clear()
    return {"count": 0}
