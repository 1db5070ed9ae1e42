"""The real-server fixtures give working, independent servers, and stop them afterwards."""

from __future__ import annotations

import socket

import psycopg
import pytest
import redis
import sqlalchemy
from pymemcache.client.base import Client as MemcacheClient
from redis.cluster import RedisCluster

from tests import servers


def test_redis_url_answers_ping_set_get(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        assert client.ping() is True
        client.set("servers:test", b"value", ex=60)
        assert client.get("servers:test") == b"value"
        # No persistence: the test server never writes RDB or AOF files.
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()


def test_redis_cluster_spreads_keys_over_three_masters(redis_cluster_nodes: list[tuple[str, int]]) -> None:
    assert len(redis_cluster_nodes) == 3
    host, port = redis_cluster_nodes[0]
    cluster = RedisCluster(host=host, port=port, socket_timeout=5)
    try:
        keys = [f"servers:cluster:{i}" for i in range(30)]
        for key in keys:
            cluster.set(key, key.encode(), ex=60)
        assert [cluster.get(key) for key in keys] == [key.encode() for key in keys]
    finally:
        cluster.close()
    # Each master holds some of the keys: the slots really are spread over all three.
    for host, port in redis_cluster_nodes:
        node = redis.Redis(host=host, port=port, socket_timeout=5)
        try:
            stored = node.dbsize()
        finally:
            node.close()
        assert stored > 0, f"no test key stored on {host}:{port}"


def test_memcached_addresses_are_two_independent_servers(memcached_addresses: list[tuple[str, int]]) -> None:
    assert len(memcached_addresses) == 2
    assert len(set(memcached_addresses)) == 2
    clients = [MemcacheClient(address, connect_timeout=5, timeout=5) for address in memcached_addresses]
    try:
        for index, client in enumerate(clients):
            assert client.set(f"servers:only-on-{index}", b"here", expire=60, noreply=False) is True
        for index, client in enumerate(clients):
            assert client.get(f"servers:only-on-{index}") == b"here"
            assert client.get(f"servers:only-on-{1 - index}") is None
    finally:
        for client in clients:
            client.close()


def test_postgres_dsn_accepts_psycopg(postgres_dsn: str) -> None:
    assert postgres_dsn.startswith("postgresql://")
    with psycopg.connect(postgres_dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1, current_database()").fetchone()
    assert row == (1, "sessions_test")


def test_postgres_dsn_accepts_sqlalchemy_psycopg(postgres_dsn: str) -> None:
    url = postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def _accepts_connections(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def test_context_manager_stops_its_server() -> None:
    with servers.start_memcached() as address:
        assert _accepts_connections(address)
    assert not _accepts_connections(address)


def test_missing_binary_fails_with_install_hint() -> None:
    with pytest.raises(servers.ServerNotInstalledError, match=r"apt-get install redis-server"):
        servers._require("starlette-session-no-such-server")
