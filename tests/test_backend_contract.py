"""The contract every backend honours, run on each one against its real server.

Each test drives the full middleware over ASGI with httpx, then checks the store directly.
Backend-specific behaviour is tested in tests/test_backend_<name>.py; this file only holds
what every backend must do the same way.
"""

from __future__ import annotations

import json
import uuid
from base64 import b64encode
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import itsdangerous
import pytest

from starlette_session import SessionBackend
from tests.backend_kit import (
    FACTORIES,
    SECRET,
    client_for,
    make_app,
    open_backend,
    session_cookie,
    session_id,
    set_session_cookie,
)


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionBackend]:
    async with open_backend(request, tmp_path) as store:
        yield store


pytestmark = pytest.mark.anyio


# -- the contract ----------------------------------------------------------------------------


async def test_round_trip(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        response = await client.post("/write", json={"user": 1, "roles": ["a", "b"]})
        assert response.status_code == 200
        sid = session_id(client)
        assert len(sid) == 43
        assert (await client.get("/read")).json() == {"user": 1, "roles": ["a", "b"]}
    assert await backend.get(sid) == {"user": 1, "roles": ["a", "b"]}


async def test_read_does_not_write_or_set_cookie(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
        await backend.remove(sid)
        await backend.write(sid, b'{"n": 2}', 60)
        response = await client.get("/read")
        assert response.json() == {"n": 2}
        assert "set-cookie" not in response.headers
        assert response.headers["vary"] == "Cookie"
    assert await backend.read(sid) == b'{"n": 2}'


async def test_missing_record_gives_empty_session_and_new_id(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        old = session_id(client)
        await backend.remove(old)
        assert (await client.get("/read")).json() == {}
        await client.post("/write", json={"n": 2})
        new = session_id(client)
    assert new != old
    assert await backend.read(old) is None
    assert await backend.get(new) == {"n": 2}


async def test_unknown_id_is_never_adopted(backend: SessionBackend) -> None:
    chosen = "attacker-chosen-id-0123456789abcdef"
    signed = itsdangerous.TimestampSigner(SECRET).sign(b64encode(json.dumps({"_cssid": chosen}).encode()))
    async with client_for(make_app(backend)) as client:
        set_session_cookie(client, signed.decode())
        assert (await client.get("/read")).json() == {}
        await client.post("/write", json={"n": 1})
        assert session_id(client) != chosen
    assert await backend.read(chosen) is None


async def test_clear_deletes_record_and_cookie(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
        response = await client.get("/clear")
        assert response.headers["set-cookie"].startswith("session=null; path=/; expires=Thu, 01 Jan 1970")
    assert await backend.read(sid) is None


async def test_regenerate_moves_data_and_kills_old_id(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"cart": ["x"]})
        old = session_id(client)
        old_cookie = session_cookie(client)
        assert (await client.get("/login")).json() == {"cart": ["x"], "user": "alice"}
        new = session_id(client)
        assert new != old
        assert await backend.read(old) is None
        assert await backend.get(new) == {"cart": ["x"], "user": "alice"}
        set_session_cookie(client, old_cookie)
        assert (await client.get("/read")).json() == {}


async def test_nested_change_is_saved(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"items": []})
        await client.get("/append", params={"item": "apple"})
        assert (await client.get("/read")).json() == {"items": ["apple"]}


async def test_expiry(backend: SessionBackend) -> None:
    async with client_for(make_app(backend, max_age=1)) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
        assert await backend.read(sid) is not None
        await anyio.sleep(2.5)
    assert await backend.read(sid) is None


async def test_bad_cookies_give_empty_session(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        for value in ["garbage", "a.b.c", "eyJfY3NzaWQiOiAiLi4vLi4vZXRjIn0=.x.y", "x" * 8000]:
            set_session_cookie(client, value)
            response = await client.get("/read")
            assert response.status_code == 200
            assert response.json() == {}


async def test_concurrent_sessions_stay_apart(backend: SessionBackend) -> None:
    app = make_app(backend)
    results: dict[int, Any] = {}

    async def user(number: int) -> None:
        async with client_for(app) as client:
            await client.post("/write", json={"user": number})
            for _ in range(3):
                results[number] = (await client.get("/read")).json()

    async with anyio.create_task_group() as group:
        for number in range(16):
            group.start_soon(user, number)
    assert results == {number: {"user": number} for number in range(16)}


async def test_large_and_unicode_values(backend: SessionBackend) -> None:
    data = {"text": "héllo wörld ✓ 日本語 🎉", "blob": "x" * 200_000, "nested": {"ü": ["ß", 1.5, None, True]}}
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json=data)
        assert (await client.get("/read")).json() == data
        sid = session_id(client)
    assert await backend.get(sid) == data


async def test_dict_api_outside_requests(backend: SessionBackend) -> None:
    sid = "outside-request-" + uuid.uuid4().hex
    assert await backend.get(sid) is None
    await backend.set(sid, {"a": 1}, 60)
    assert await backend.get(sid) == {"a": 1}
    await backend.set(sid, {"a": 2}, 60)
    assert await backend.get(sid) == {"a": 2}
    assert await backend.touch(sid, 120) is True
    assert await backend.get(sid) == {"a": 2}
    await backend.delete(sid)
    assert await backend.get(sid) is None
    assert await backend.touch(sid, 60) is False
    await backend.delete(sid)  # deleting a missing record is not an error
    assert isinstance(await backend.delete_expired(), int)


async def test_rolling_touches_record(backend: SessionBackend) -> None:
    async with client_for(make_app(backend, rolling=True)) as client:
        await client.post("/write", json={"n": 1})
        first = session_cookie(client)
        sid = session_id(client)
        response = await client.get("/read")
        assert "set-cookie" in response.headers
        assert session_id(client) == sid
        assert first.split(".")[0] == session_cookie(client).split(".")[0]
    assert await backend.get(sid) == {"n": 1}


class CountingBackend(SessionBackend):
    """Delegates to a real backend and counts what the middleware asks of it."""

    def __init__(self, inner: SessionBackend) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def read(self, session_id: str) -> bytes | None:
        self.calls.append("read")
        return await self.inner.read(session_id)

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        self.calls.append("write")
        await self.inner.write(session_id, data, ttl)

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        self.calls.append("create")
        return await self.inner.create(session_id, data, ttl)

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        self.calls.append("replace")
        return await self.inner.replace(session_id, data, ttl)

    async def remove(self, session_id: str) -> None:
        self.calls.append("remove")
        await self.inner.remove(session_id)

    async def touch(self, session_id: str, ttl: int) -> bool:
        self.calls.append("touch")
        return await self.inner.touch(session_id, ttl)


async def test_no_store_flooding(backend: SessionBackend) -> None:
    counting = CountingBackend(backend)
    async with client_for(make_app(counting)) as client:
        for _ in range(3):
            response = await client.get("/read")  # reads the (empty) session, stores nothing
            assert response.json() == {}
            assert "set-cookie" not in response.headers
        set_session_cookie(client, "forged.cookie.value")
        assert "set-cookie" not in (await client.get("/read")).headers
    assert counting.calls == []


async def test_store_commands_per_request(backend: SessionBackend) -> None:
    counting = CountingBackend(backend)
    async with client_for(make_app(counting)) as client:
        await client.post("/write", json={"n": 1})
        assert counting.calls == ["create"]  # new session: one create, no load
        counting.calls.clear()
        await client.get("/read")
        assert counting.calls == ["read"]  # read: one load, no write
        counting.calls.clear()
        await client.post("/write", json={"n": 2})
        assert counting.calls == ["read", "replace"]
        counting.calls.clear()
        await client.get("/clear")
        assert counting.calls == ["read", "remove"]
