"""The test doubles starlette-session 0.4.3's users test with keep working.

0.4.3 called ``get``, ``set`` and ``delete`` on the Redis client they passed, and its users'
tests spy on those methods (pytest-mock) of a ``fakeredis.FakeRedis``, or pass pymemcache's
``MockMemcacheClient``. These tests are about the calls the middleware makes on such doubles;
what a real server does with them is tested in the backend contract suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from pymemcache.test.utils import MockMemcacheClient
from pytest_mock import MockerFixture
from starlette.applications import Starlette

from starlette_session.backends import BackendType, MemcacheJSONSerde
from tests.helpers import CLEARED, cookie_pair, make_app, only_set_cookie, request

pytestmark = pytest.mark.anyio


@pytest.fixture
def client() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    yield client
    client.close()


def redis_app(client: fakeredis.FakeRedis) -> Starlette:
    return make_app(cookie_name="session", backend_type=BackendType.redis, backend_client=client)


class Spies:
    """Spies on a client's ``get``, ``set`` and ``delete``, as 0.4.3's users set them up."""

    def __init__(self, mocker: MockerFixture, client: Any) -> None:
        self.get = mocker.spy(client, "get")
        self.set = mocker.spy(client, "set")
        self.delete = mocker.spy(client, "delete")

    def counts(self) -> tuple[int, int, int]:
        return self.get.call_count, self.set.call_count, self.delete.call_count

    def reset(self) -> None:
        for spy in (self.get, self.set, self.delete):
            spy.reset_mock()


async def login(app: Starlette) -> str:
    """Create a session holding ``user=ann``; return the Cookie header that carries it."""
    response = await request(app, "/write?user=ann")
    assert response.json() == {"user": "ann"}
    return cookie_pair(only_set_cookie(response))


async def test_a_new_session_is_one_set(client: fakeredis.FakeRedis, mocker: MockerFixture) -> None:
    spies = Spies(mocker, client)
    await login(redis_app(client))
    assert spies.counts() == (0, 1, 0)
    stored_key, stored_value = spies.set.call_args.args[:2]
    assert client.get(stored_key) == stored_value


async def test_a_load_is_one_get(client: fakeredis.FakeRedis, mocker: MockerFixture) -> None:
    app = redis_app(client)
    cookie = await login(app)
    spies = Spies(mocker, client)
    response = await request(app, "/read", cookie=cookie)
    assert response.json() == {"user": "ann"}
    assert spies.counts() == (1, 0, 0)  # an unchanged session is not written back


async def test_a_save_is_one_get_and_one_set(client: fakeredis.FakeRedis, mocker: MockerFixture) -> None:
    app = redis_app(client)
    cookie = await login(app)
    spies = Spies(mocker, client)
    response = await request(app, "/write?cart=3", cookie=cookie)
    assert response.json() == {"user": "ann", "cart": "3"}
    assert spies.counts() == (1, 1, 0)
    assert spies.get.call_args.args[0] == spies.set.call_args.args[0]  # the same key
    spies.reset()
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "ann", "cart": "3"}
    assert spies.counts() == (1, 0, 0)


async def test_a_logout_is_one_get_and_one_delete(client: fakeredis.FakeRedis, mocker: MockerFixture) -> None:
    app = redis_app(client)
    cookie = await login(app)
    spies = Spies(mocker, client)
    response = await request(app, "/clear", cookie=cookie)
    assert CLEARED in only_set_cookie(response)
    assert spies.counts() == (1, 0, 1)
    assert spies.delete.call_args.args[0] == spies.get.call_args.args[0]
    assert client.dbsize() == 0
    assert (await request(app, "/read", cookie=cookie)).json() == {}


# -- pymemcache's MockMemcacheClient -----------------------------------------------------------


# MockMemcacheClient.set encodes a str value to bytes *before* its serde sees it (the real
# pymemcache client calls the serde first), so with MemcacheJSONSerde the backend hands it the
# session dict instead of its text.


@pytest.mark.parametrize(
    "serde",
    [None, MemcacheJSONSerde()],
    ids=["default-serde", "MemcacheJSONSerde"],
)
async def test_mock_memcache_client_end_to_end(serde: Any) -> None:
    client = MockMemcacheClient() if serde is None else MockMemcacheClient(serde=serde)
    original = client.serde
    app = make_app(cookie_name="session", backend_type=BackendType.memcache, backend_client=client)
    cookie = await login(app)
    assert client.serde is original  # 0.4.3 replaced it; the backend never does
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "ann"}
    response = await request(app, "/write?cart=3", cookie=cookie)
    assert response.json() == {"user": "ann", "cart": "3"}
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "ann", "cart": "3"}
    response = await request(app, "/clear", cookie=cookie)
    assert CLEARED in only_set_cookie(response)
    assert (await request(app, "/read", cookie=cookie)).json() == {}
    assert client._contents == {}


async def test_mock_memcache_client_spies(mocker: MockerFixture) -> None:
    client = MockMemcacheClient()
    app = make_app(cookie_name="session", backend_type=BackendType.memcache, backend_client=client)
    cookie = await login(app)
    get = mocker.spy(client, "get")
    delete = mocker.spy(client, "delete")
    assert (await request(app, "/read", cookie=cookie)).json() == {"user": "ann"}
    assert get.call_count == 1
    await request(app, "/clear", cookie=cookie)
    assert (get.call_count, delete.call_count) == (2, 1)
