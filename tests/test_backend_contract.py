"""The contract every backend honours, run on each one against its real server.

Each test drives the full middleware over ASGI with httpx, then checks the store directly.
Backend-specific behaviour is tested in tests/test_backend_<name>.py; this file only holds
what every backend must do the same way.
"""

from __future__ import annotations

import hashlib
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
from starlette_session.backends.base import DictBackendAdapter
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
        await backend.remove(backend.key_for(sid))
        await backend.write(backend.key_for(sid), b'{"n": 2}', 60)
        response = await client.get("/read")
        assert response.json() == {"n": 2}
        assert "set-cookie" not in response.headers
        assert response.headers["vary"] == "Cookie"
    assert await backend.read(backend.key_for(sid)) == b'{"n": 2}'


async def test_missing_record_gives_empty_session_and_new_id(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        old = session_id(client)
        await backend.remove(backend.key_for(old))
        assert (await client.get("/read")).json() == {}
        await client.post("/write", json={"n": 2})
        new = session_id(client)
    assert new != old
    assert await backend.read(backend.key_for(old)) is None
    assert await backend.get(new) == {"n": 2}


async def test_unknown_id_is_never_adopted(backend: SessionBackend) -> None:
    chosen = "attacker-chosen-id-0123456789abcdef"
    signed = itsdangerous.TimestampSigner(SECRET).sign(b64encode(json.dumps({"_cssid": chosen}).encode()))
    async with client_for(make_app(backend)) as client:
        set_session_cookie(client, signed.decode())
        assert (await client.get("/read")).json() == {}
        await client.post("/write", json={"n": 1})
        assert session_id(client) != chosen
    assert await backend.read(backend.key_for(chosen)) is None


async def test_clear_deletes_record_and_cookie(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
        response = await client.get("/clear")
        assert response.headers["set-cookie"].startswith("session=null; path=/; expires=Thu, 01 Jan 1970")
    assert await backend.read(backend.key_for(sid)) is None


async def test_regenerate_moves_data_and_kills_old_id(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"cart": ["x"]})
        old = session_id(client)
        old_cookie = session_cookie(client)
        assert (await client.get("/login")).json() == {"cart": ["x"], "user": "alice"}
        new = session_id(client)
        assert new != old
        assert await backend.read(backend.key_for(old)) is None
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
        assert await backend.read(backend.key_for(sid)) is not None
        await anyio.sleep(2.5)
    assert await backend.read(backend.key_for(sid)) is None


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
    assert await backend.touch(backend.key_for(sid), 120) is True
    assert await backend.get(sid) == {"a": 2}
    await backend.delete(sid)
    assert await backend.get(sid) is None
    assert await backend.touch(backend.key_for(sid), 60) is False
    await backend.delete(sid)  # deleting a missing record is not an error
    assert isinstance(await backend.delete_expired(), int)


def signed_id_cookie(public_id: str) -> str:
    return (
        itsdangerous.TimestampSigner(SECRET)
        .sign(b64encode(json.dumps({"_cssid": public_id}).encode()))
        .decode()
    )


async def test_the_store_holds_no_id_a_cookie_could_carry(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        sid = session_id(client)
    key = backend.key_for(sid)
    if isinstance(backend, DictBackendAdapter):  # a 0.4.3 backend sees the id, as in 0.4.3
        assert key == sid
        return
    assert key == "2-" + hashlib.sha256(sid.encode()).hexdigest()
    assert await backend.read(key) == b'{"n": 1}'
    assert await backend.read(sid) is None  # nothing under the public id


async def test_a_private_id_in_a_cookie_is_never_accepted(backend: SessionBackend) -> None:
    async with client_for(make_app(backend)) as client:
        await client.post("/write", json={"n": 1})
        key = backend.key_for(session_id(client))
        set_session_cookie(client, signed_id_cookie("2-" + "0" * 64))
        assert (await client.get("/read")).json() == {}
        if key.startswith("2-"):  # the store key itself, signed into a cookie, opens nothing
            set_session_cookie(client, signed_id_cookie(key))
            assert (await client.get("/read")).json() == {}


async def test_a_record_under_the_raw_id_is_found_and_moved_on_its_next_save(backend: SessionBackend) -> None:
    if isinstance(backend, DictBackendAdapter):
        return  # keys are raw there already
    public = "written-by-v10-" + uuid.uuid4().hex
    await backend.write(public, b'{"n": 1}', 60)  # how starlette-session 1.0 stored it
    counting = CountingBackend(backend)
    async with client_for(make_app(counting)) as client:
        set_session_cookie(client, signed_id_cookie(public))
        assert (await client.get("/read")).json() == {"n": 1}
        assert counting.calls == ["read", "read"]  # the hashed key missed, then the raw one hit
        counting.calls.clear()
        assert (await client.post("/write", json={"m": 2})).json() == {"n": 1, "m": 2}
        assert session_id(client) == public  # nobody is logged out
        counting.calls.clear()
        assert (await client.get("/read")).json() == {"n": 1, "m": 2}
        assert counting.calls == ["read"]  # moved: one command again
    assert await backend.read(public) is None
    assert await backend.get(public) == {"n": 1, "m": 2}


async def test_logout_of_a_raw_record_removes_it(backend: SessionBackend) -> None:
    if isinstance(backend, DictBackendAdapter):
        return
    public = "written-by-v10-" + uuid.uuid4().hex
    await backend.write(public, b'{"n": 1}', 60)
    async with client_for(make_app(backend)) as client:
        set_session_cookie(client, signed_id_cookie(public))
        await client.get("/clear")
        assert (await client.get("/read")).json() == {}
    assert await backend.read(public) is None


async def test_raw_keys_and_no_fallback_can_be_chosen(backend: SessionBackend) -> None:
    if isinstance(backend, DictBackendAdapter):
        return
    public = "written-by-v10-" + uuid.uuid4().hex
    await backend.write(public, b'{"n": 1}', 60)
    async with client_for(make_app(backend, raw_id_fallback=False)) as client:
        set_session_cookie(client, signed_id_cookie(public))
        assert (await client.get("/read")).json() == {}  # not looked up
    async with client_for(make_app(backend, hash_ids=False)) as client:
        set_session_cookie(client, signed_id_cookie(public))
        assert (await client.get("/read")).json() == {"n": 1}
        await client.post("/write", json={"m": 2})
    assert await backend.read(public) == b'{"n": 1, "m": 2}'  # kept under the raw key
    backend.hash_ids = True


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
