"""``python -m starlette_session``: every command on every store, on real servers.

Sessions are written through the backends' dict API (``set``), as the CLI reads them (``get``,
``delete``), so the tests hold whatever key form the backends use. A user's sessions (``list``,
``revoke``) are made by signing in to an app with ``user_key="user_id"`` on the store, as the
middleware indexes them, and each revoked one is checked from the app: its next request is
anonymous. Expired sessions are written
with a clock set in the past, so some are already expired when the command (which uses the real
clock) runs; no sleeping.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import itsdangerous
import pytest
import redis
import redis.cluster
import sqlalchemy
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_session import regenerate_session
from starlette_session.__main__ import main
from starlette_session.backends.file import FileBackend
from starlette_session.backends.memcache import MemcacheBackend
from starlette_session.backends.redis import RedisBackend
from starlette_session.backends.sqlalchemy import SQLAlchemyBackend
from starlette_session.ids import new_session_id, private_id
from starlette_session.interfaces import SessionBackend
from tests.helpers import SECRET, make_app, sign_json, unsign_json

REPO = Path(__file__).resolve().parent.parent
HOUR = 60 * 60
STORES = ["file", "sqlite", "postgres", "redis", "memcache"]


def _past() -> float:
    return time.time() - 10 * HOUR


@dataclass
class Filled:
    """A store holding 2 live sessions (and, where the store keeps them, 3 expired ones)."""

    kind: str
    location: str
    #: Options every command on this store needs (``--table`` for the test's own table).
    options: list[str]
    live: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    #: How many records the store holds, or ``None`` when it cannot tell (memcached).
    count: Callable[[], int | None] = lambda: None

    def run(self, command: str, *arguments: str) -> int:
        return main([command, self.location, *arguments, *self.options])


async def _fill(live: SessionBackend, expired: SessionBackend | None, filled: Filled) -> Filled:
    try:
        if expired is not None:
            filled.dead = [new_session_id() for _ in range(3)]
            for number, session_id in enumerate(filled.dead):
                await expired.set(session_id, {"n": number}, HOUR)
        filled.live = [new_session_id() for _ in range(2)]
        for number, session_id in enumerate(filled.live):
            await live.set(session_id, {"n": number, "user": "zoë"}, HOUR)
    finally:
        await live.aclose()
        if expired is not None:
            await expired.aclose()
    return filled


def fill_directory(directory: Path) -> Filled:
    filled = Filled("file", str(directory), [])
    filled.count = lambda: sum(1 for path in directory.iterdir() if path.name.startswith("session-"))
    return anyio.run(_fill, FileBackend(directory), FileBackend(directory, clock=_past), filled)


def fill_database(url: str, table: str | None = None) -> Filled:
    filled = Filled("sql", url, [] if table is None else ["--table", table])

    def count() -> int:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as connection:
                name = table or "starlette_sessions"
                return int(connection.execute(sqlalchemy.text(f"SELECT count(*) FROM {name}")).scalar_one())
        finally:
            engine.dispose()

    filled.count = count
    return anyio.run(
        _fill,
        SQLAlchemyBackend.from_url(url, table_name=table),
        SQLAlchemyBackend.from_url(url, table_name=table, clock=_past),
        filled,
    )


def redis_db(redis_url: str) -> str:
    """The URL of a Redis database of these tests' own."""
    return redis_url.rsplit("/", 1)[0] + "/12"


@pytest.fixture
def redis_location(redis_url: str) -> Iterator[str]:
    url = redis_db(redis_url)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def memcache_location(addresses: list[tuple[str, int]]) -> str:
    return "memcache://" + ",".join(f"{host}:{port}" for host, port in addresses)


def fill_redis(url: str, key_prefix: str = "starlette_session:") -> Filled:
    client = redis.Redis.from_url(url)
    filled = Filled("redis", url, [] if key_prefix == "starlette_session:" else ["--key-prefix", key_prefix])
    filled.count = lambda: int(client.dbsize())
    return anyio.run(_fill, RedisBackend(client, key_prefix=key_prefix), None, filled)


def fill_memcache(addresses: list[tuple[str, int]], key_prefix: str = "starlette_session:") -> Filled:
    servers = [f"{host}:{port}" for host, port in addresses]
    options = [] if key_prefix == "starlette_session:" else ["--key-prefix", key_prefix]
    filled = Filled("memcache", memcache_location(addresses), options)
    return anyio.run(_fill, MemcacheBackend.from_servers(servers, key_prefix=key_prefix), None, filled)


@pytest.fixture
def postgres_url(postgres_dsn: str) -> str:
    return postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def postgres_table(postgres_url: str) -> Iterator[str]:
    """A table name of the test's own, dropped afterwards."""
    name = f"cli_{uuid.uuid4().hex[:12]}"
    yield name
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {name}"))
    finally:
        engine.dispose()


def _filled(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Filled:
    if kind == "file":
        return fill_directory(tmp_path / "sessions")
    if kind == "sqlite":
        return fill_database(f"sqlite:///{tmp_path / 'sessions.db'}")
    if kind == "postgres":
        return fill_database(
            request.getfixturevalue("postgres_url"), request.getfixturevalue("postgres_table")
        )
    if kind == "redis":
        return fill_redis(request.getfixturevalue("redis_location"))
    return fill_memcache(request.getfixturevalue("memcached_addresses"))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Filled:
    """Each kind of store the command line opens, filled with sessions."""
    return _filled(request.param, request, tmp_path)


@pytest.fixture(params=["file", "sqlite", "postgres"])
def kept_store(request: pytest.FixtureRequest, tmp_path: Path) -> Filled:
    """The stores that keep expired records until ``delete-expired`` removes them."""
    return _filled(request.param, request, tmp_path)


# -- the commands on every store ---------------------------------------------------------------


def test_help_lists_the_commands_and_exit_codes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "starlette_session", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("delete-expired", "get", "delete", "list", "revoke", "decode-cookie", "migrate-043"):
        assert command in done.stdout
    assert "Exit status" in done.stdout


def test_get_prints_the_session(store: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    assert store.run("get", store.live[1]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == {"n": 1, "user": "zoë"}
    assert "zoë" in out  # printed as text, not \u escapes

    # Expired and unknown sessions are "no such session", exit 1.
    for session_id in [*store.dead[:1], new_session_id()]:
        assert store.run("get", session_id) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "no such session" in captured.err


def test_delete_removes_one_session(store: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    before = store.count()
    assert store.run("delete", store.live[0]) == 0
    assert capsys.readouterr().out.strip() == "deleted"
    assert store.run("get", store.live[0]) == 1
    assert store.run("get", store.live[1]) == 0
    if before is not None:
        assert store.count() == before - 1
    capsys.readouterr()
    # Deleting a session that is not there says so.
    assert store.run("delete", store.live[0]) == 1
    captured = capsys.readouterr()
    assert "no such session" in captured.err
    assert captured.out == ""


def test_delete_expired(store: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    before = store.count()
    assert store.run("delete-expired") == 0
    captured = capsys.readouterr()
    if store.kind in ("redis", "memcache"):
        assert captured.out.strip() == "deleted 0 expired session(s)"
        assert "expires sessions by itself" in captured.err
        assert store.count() == before
    else:
        assert captured.out.strip() == "deleted 3 expired session(s)"
        assert store.count() == 2
    for session_id in store.live:
        assert store.run("get", session_id) == 0
    capsys.readouterr()
    # Nothing is left to delete.
    assert store.run("delete-expired") == 0
    assert capsys.readouterr().out.strip() == "deleted 0 expired session(s)"


@pytest.mark.parametrize("command", ["get", "delete"])
@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "short", "x" * 200, "has space in it 0123456789"])
def test_invalid_id_exits_2(
    command: str, bad_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    assert main([command, str(directory), bad_id]) == 2
    assert "is not a session id" in capsys.readouterr().err
    assert list(directory.iterdir()) == []


def test_delete_expired_leaves_other_files_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "sessions"
    filled = fill_directory(directory)
    (directory / "notes.txt").write_text("not a session")
    assert main(["delete-expired", str(directory)]) == 0
    assert "deleted 3" in capsys.readouterr().out
    assert (directory / "notes.txt").read_text() == "not a session"
    assert filled.count() == 2


# -- options before or after the command -------------------------------------------------------


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_table_option_before_or_after(
    before: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    filled = fill_database(url, table="my_sessions")
    table = ["--table", "my_sessions"]
    assert main([*table, "delete-expired", url] if before else ["delete-expired", url, *table]) == 0
    assert capsys.readouterr().out.strip() == "deleted 3 expired session(s)"
    assert main([*table, "get", url, filled.live[0]] if before else ["get", *table, url, filled.live[0]]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 0, "user": "zoë"}
    # Without the option, the default table (which does not exist) is used.
    assert main(["get", url, filled.live[0]]) == 2


@pytest.mark.parametrize("kind", ["redis", "memcache"])
@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_key_prefix_before_or_after(
    kind: str, before: bool, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "redis":
        filled = fill_redis(request.getfixturevalue("redis_location"), key_prefix="app:")
    else:
        filled = fill_memcache(request.getfixturevalue("memcached_addresses"), key_prefix="app:")
    session_id = filled.live[0]
    prefix = ["--key-prefix", "app:"]
    argv = (
        [*prefix, "get", filled.location, session_id]
        if before
        else ["get", filled.location, session_id, *prefix]
    )
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 0, "user": "zoë"}
    # The default prefix does not find it.
    assert main(["get", filled.location, session_id]) == 1


def test_an_id_starting_with_a_dash_is_not_taken_for_an_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    dashed = "-starts-with-a-dash-0123456789"
    assert main(["get", str(directory), dashed]) == 1
    assert "no such session" in capsys.readouterr().err
    # Also with options after it.
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    fill_database(url, table="t")
    assert main(["get", url, dashed, "--table", "t"]) == 1
    assert "no such session" in capsys.readouterr().err

    async def write() -> None:
        backend = FileBackend(directory)
        await backend.set(dashed, {"dash": True}, HOUR)

    anyio.run(write)
    assert main(["get", str(directory), dashed]) == 0
    assert json.loads(capsys.readouterr().out) == {"dash": True}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--table", "t", "get", "{dir}", "{id}"], "--table applies to SQL databases only"),
        (["get", "{redis}", "{id}", "--table", "t"], "--table applies to SQL databases only"),
        (["--key-prefix", "p:", "get", "{dir}", "{id}"], "--key-prefix applies to Redis and memcached only"),
        (["delete-expired", "{sqlite}", "--key-prefix", "p:"], "--key-prefix applies to Redis and memcached"),
        (["get", "{dir}", "{id}", "--cluster"], "--cluster applies to Redis URLs only"),
        (["--table", "t", "decode-cookie", "x.y.z"], "--table does not apply to decode-cookie"),
    ],
)
def test_an_option_for_another_store_is_a_usage_error(
    argv: list[str],
    message: str,
    tmp_path: Path,
    redis_location: str,
    secret: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    sqlite = tmp_path / "sessions.db"
    fill_database(f"sqlite:///{sqlite}")
    values = {"{dir}": str(directory), "{id}": new_session_id(), "{redis}": redis_location}
    values["{sqlite}"] = f"sqlite:///{sqlite}"
    assert main([values.get(argument, argument) for argument in argv]) == 2
    assert message in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["vacuum", "/tmp"])
    assert exc_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# -- nothing is created by a wrong location ----------------------------------------------------


@pytest.mark.parametrize("command", ["get", "delete", "delete-expired"])
def test_missing_directory_exits_2(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    argv = [command, str(missing)] + ([] if command == "delete-expired" else [new_session_id()])
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()  # the command never creates a store


@pytest.mark.parametrize("command", ["get", "delete", "delete-expired"])
@pytest.mark.parametrize("where", ["file", "directory"])
def test_missing_sqlite_file_exits_2(
    command: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.db" if where == "file" else tmp_path / "nowhere" / "absent.db"
    for url in (f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"):
        argv = [command, url] + ([] if command == "delete-expired" else [new_session_id()])
        assert main(argv) == 2
        assert "does not exist" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []


def test_missing_table_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.db"
    sqlalchemy.create_engine(f"sqlite:///{path}").connect().close()  # an empty database file
    assert main(["delete-expired", f"sqlite:///{path}"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["get", f"sqlite:///{path}", new_session_id()]) == 2
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []  # no table was created
    finally:
        engine.dispose()


def test_missing_postgres_table_exits_2(
    postgres_url: str, postgres_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["get", postgres_url, new_session_id(), "--table", postgres_table]) == 2
    assert "error:" in capsys.readouterr().err
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        assert postgres_table not in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("postgresql+nosuchdriver://u@127.0.0.1:1/db", "not a usable SQLAlchemy database URL"),
        ("mysql+mysqldb://u@127.0.0.1:1/db", "driver is not installed"),
        ("memcache://127.0.0.1:notaport", "not a memcached location"),
        ("memcache://", "not a memcached location"),
    ],
)
def test_a_bad_url_exits_2(location: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert importlib.util.find_spec("MySQLdb") is None  # the test needs a driver that is not installed
    assert main(["get", location, new_session_id()]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("location", ["redis://127.0.0.1:1/0", "memcache://127.0.0.1:1"])
def test_an_unreachable_server_exits_2_without_naming_the_id(
    location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    session_id = new_session_id()
    assert main(["get", location, session_id]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: session store")
    assert session_id not in err


# -- Redis Cluster -----------------------------------------------------------------------------


def test_a_redis_cluster(
    redis_cluster_nodes: list[tuple[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    startup = [redis.cluster.ClusterNode(host, port) for host, port in redis_cluster_nodes]  # type: ignore[no-untyped-call]
    client = redis.cluster.RedisCluster(startup_nodes=startup)
    try:
        session_ids = [new_session_id() for _ in range(5)]  # spread over the nodes

        async def write() -> None:
            backend = RedisBackend(client)
            for session_id in session_ids:
                await backend.set(session_id, {"id": session_id[:4]}, HOUR)

        anyio.run(write)
        host, port = redis_cluster_nodes[0]
        url = f"redis://{host}:{port}/0"
        for session_id in session_ids:
            assert main(["--cluster", "get", url, session_id]) == 0
            assert json.loads(capsys.readouterr().out) == {"id": session_id[:4]}
        assert main(["delete", url, session_ids[0], "--cluster"]) == 0
        assert main(["get", url, session_ids[0], "--cluster"]) == 1
        assert main(["delete-expired", "--cluster", url]) == 0
        assert capsys.readouterr().out.strip().endswith("deleted 0 expired session(s)")
    finally:
        client.close()


# -- progress on a terminal only ---------------------------------------------------------------


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "piped"])
def test_delete_expired_progress(
    tty: bool, kept_store: Filled, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert kept_store.run("delete-expired") == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "deleted 3 expired session(s)"
    if tty:
        assert "\rdeleting expired sessions... " in captured.err
        assert captured.err.endswith("\r")  # the line is cleared at the end
    else:
        assert captured.err == ""


# -- decode-cookie -------------------------------------------------------------------------------


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STARLETTE_SESSION_SECRET", SECRET)
    return SECRET


def test_decode_cookie_prints_the_session_id(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    session_id = new_session_id()
    assert main(["decode-cookie", sign_json({"_cssid": session_id}, secret)]) == 0
    assert capsys.readouterr().out == session_id + "\n"
    # A 0.4.3 id too.
    old = str(uuid.uuid4())
    assert main(["decode-cookie", sign_json({"_cssid": old}, secret)]) == 0
    assert capsys.readouterr().out == old + "\n"


def test_decode_cookie_prints_a_cookie_session(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = {"user": "zoë", "cart": [1, 2], "_cssid": "not alone"}
    assert main(["decode-cookie", sign_json(data, secret)]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == data
    assert "zoë" in out


def test_decode_cookie_joins_chunks(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    value = sign_json({"big": "x" * 100}, secret)
    assert main(["decode-cookie", value[:50], value[50:120], value[120:]]) == 0
    assert json.loads(capsys.readouterr().out) == {"big": "x" * 100}
    assert main(["decode-cookie", "chunks.3"]) == 2
    assert "split cookie" in capsys.readouterr().err


def test_decode_cookie_refuses_what_does_not_verify(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    good = sign_json({"_cssid": new_session_id()}, secret)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for value in (sign_json({"_cssid": new_session_id()}, "another secret"), tampered, "garbage", "a.b.c"):
        assert main(["decode-cookie", value]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "does not verify" in captured.err


def test_decode_cookie_checks_the_age(
    secret: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        itsdangerous.TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 20 * 86400
    )
    old = itsdangerous.TimestampSigner(secret).sign(b"eyJhIjogMX0=").decode()  # base64 of {"a": 1}
    monkeypatch.undo()
    monkeypatch.setenv("STARLETTE_SESSION_SECRET", secret)
    assert main(["decode-cookie", old]) == 1  # older than the default 14 days
    assert "older than 1209600 s" in capsys.readouterr().err
    assert main(["decode-cookie", old, "--max-age", str(30 * 86400)]) == 0
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    assert main(["decode-cookie", "--max-age", "none", old]) == 0
    assert main(["decode-cookie", old, "--max-age", "60"]) == 1


def test_decode_cookie_reads_the_secret_from_the_environment_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    value = sign_json({"a": 1}, "from another variable")
    monkeypatch.delenv("STARLETTE_SESSION_SECRET", raising=False)
    assert main(["decode-cookie", value]) == 2
    assert "set the environment variable STARLETTE_SESSION_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("APP_SECRET", "from another variable")
    assert main(["decode-cookie", value, "--secret-env", "APP_SECRET"]) == 0
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    # There is no option that takes the secret itself, not even by abbreviation.
    with pytest.raises(SystemExit) as exc_info:
        main(["decode-cookie", value, "--secret", "from another variable"])
    assert exc_info.value.code == 2
    capsys.readouterr()
    # A secret typed where the variable's name belongs is refused without being echoed.
    assert main(["decode-cookie", value, "--secret-env", "s3cret value!"]) == 2
    err = capsys.readouterr().err
    assert "takes the name of an environment variable" in err
    assert "s3cret" not in err


def test_decode_cookie_as_a_program(tmp_path: Path) -> None:
    session_id = new_session_id()
    env = {**os.environ, "STARLETTE_SESSION_SECRET": SECRET}
    command = [sys.executable, "-m", "starlette_session", "decode-cookie"]
    done = subprocess.run(
        [*command, sign_json({"_cssid": session_id})],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, session_id + "\n", "")
    done = subprocess.run(
        [*command, "not.a.cookie"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "does not verify" in done.stderr


# -- a user's sessions: list and revoke ----------------------------------------------------------

USER_STORES = ["file", "sqlite", "postgres", "redis", "redis-cluster", "memcache"]
JSON_FIELDS = {"handle", "created_at", "last_seen_at", "expires_at", "user_agent", "ip"}


async def _sign_in(request: Request) -> Response:
    regenerate_session()
    request.session["user_id"] = request.query_params["user"]
    return JSONResponse(dict(request.session))


async def _whoami(request: Request) -> Response:
    return JSONResponse(dict(request.session))


@dataclass
class Device:
    """One browser of a user: its own cookies, User-Agent and address, sent to the app."""

    app: Starlette
    user_agent: str
    ip: str
    cookies: httpx.Cookies = field(default_factory=httpx.Cookies)

    def get(self, path: str) -> Any:
        async def send() -> Any:
            transport = httpx.ASGITransport(app=self.app, client=(self.ip, 40000))
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://testserver",
                cookies=self.cookies,
                headers={b"User-Agent": self.user_agent.encode("latin-1")},
            ) as client:
                response = await client.get(path)
                assert response.status_code == 200, response.text
                self.cookies = httpx.Cookies(client.cookies)
                return response.json()

        return anyio.run(send)

    def sign_in(self, user: str) -> Device:
        assert self.get(f"/sign-in?user={user}") == {"user_id": user}
        return self

    def session(self) -> Any:
        return self.get("/whoami")

    @property
    def session_id(self) -> str:
        value = self.cookies.get("session")
        assert value is not None, "no session cookie"
        session_id: str = unsign_json(value)["_cssid"]
        return session_id

    @property
    def handle(self) -> str:
        return private_id(self.session_id)


@dataclass
class UserStore:
    """A store the command line opens, behind an app that indexes sessions by ``user_id``."""

    kind: str
    location: str
    options: list[str]
    app: Starlette
    #: A user name of this test's own (Redis Cluster and memcached are shared between tests).
    user: str = field(default_factory=lambda: f"ann-{uuid.uuid4().hex[:8]}")
    devices: int = 0

    def run(self, command: str, *arguments: str) -> int:
        return main([command, self.location, *arguments, *self.options])

    def device(self, user_agent: str | None = None) -> Device:
        self.devices += 1
        number = self.devices
        return Device(self.app, user_agent or f"Device/{number}.0 (test)", f"10.0.0.{number}")


def _user_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, str, list[str]]:
    """The app's backend for ``kind``, the location the command line is given, and its options."""
    if kind == "file":
        return FileBackend(tmp_path / "sessions"), str(tmp_path / "sessions"), []
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'sessions.db'}"
        return SQLAlchemyBackend.from_url(url), url, []
    if kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        table = request.getfixturevalue("postgres_table")
        return SQLAlchemyBackend.from_url(url, table_name=table), url, ["--table", table]
    if kind == "redis":
        url = request.getfixturevalue("redis_location")
        return RedisBackend(redis.Redis.from_url(url)), url, []
    if kind == "redis-cluster":
        nodes: list[tuple[str, int]] = request.getfixturevalue("redis_cluster_nodes")
        startup = [redis.cluster.ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
        host, port = nodes[0]
        return (
            RedisBackend(redis.cluster.RedisCluster(startup_nodes=startup)),
            f"redis://{host}:{port}/0",
            ["--cluster"],
        )
    addresses: list[tuple[str, int]] = request.getfixturevalue("memcached_addresses")
    servers = [f"{host}:{port}" for host, port in addresses]
    return MemcacheBackend.from_servers(servers), memcache_location(addresses), []


@pytest.fixture(params=USER_STORES)
def user_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UserStore]:
    """Each kind of store the command line opens, behind an app with ``user_key="user_id"``."""
    backend, location, options = _user_backend(request.param, request, tmp_path)
    app = make_app(
        [Route("/sign-in", _sign_in), Route("/whoami", _whoami)],
        backend=backend,
        user_key="user_id",
        track_client=True,
    )
    try:
        yield UserStore(request.param, location, options, app)
    finally:
        anyio.run(backend.aclose)
        client = getattr(backend, "client", None)
        if isinstance(client, redis.Redis | redis.cluster.RedisCluster):
            client.close()


def _table(out: str) -> list[list[str]]:
    """The rows of ``list``'s table (its columns are two or more spaces apart), header first."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]


def test_list_prints_a_users_sessions(user_store: UserStore, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.time()
    phone = user_store.device("Phone/1.0 (test)").sign_in(user_store.user)
    laptop = user_store.device("Laptop/2.0 (test)").sign_in(user_store.user)
    other = user_store.device().sign_in(f"{user_store.user}-other")
    ended = time.time()

    assert user_store.run("list", user_store.user) == 0
    captured = capsys.readouterr()
    rows = _table(captured.out)
    assert rows[0] == ["HANDLE", "CREATED (UTC)", "LAST SEEN (UTC)", "EXPIRES (UTC)", "USER AGENT", "IP"]
    # Most recently seen first; the other user's session is not listed.
    assert [row[0] for row in rows[1:]] == [laptop.handle, phone.handle]
    assert [row[4:] for row in rows[1:]] == [["Laptop/2.0 (test)", laptop.ip], ["Phone/1.0 (test)", phone.ip]]
    for row in rows[1:]:
        created = time.mktime(time.strptime(row[1] + " UTC", "%Y-%m-%d %H:%M:%S %Z")) - time.timezone
        assert int(started) - 1 <= created <= ended + 1, row
        expires = time.mktime(time.strptime(row[3] + " UTC", "%Y-%m-%d %H:%M:%S %Z")) - time.timezone
        assert expires >= created + 14 * 24 * HOUR - 2, row  # the middleware's default max_age
    for device in (phone, laptop, other):
        assert device.session_id not in captured.out + captured.err  # handles, never ids
    assert other.handle not in captured.out

    assert user_store.run("list", user_store.user, "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["handle"] for line in lines] == [laptop.handle, phone.handle]
    for line, device in zip(lines, (laptop, phone), strict=True):
        assert set(line) == JSON_FIELDS
        assert (line["user_agent"], line["ip"]) == (device.user_agent, device.ip)
        assert started - 1 <= line["created_at"] <= line["last_seen_at"] <= ended + 1
        assert line["expires_at"] > ended + 13 * 24 * HOUR

    # A user without sessions: an empty list, which is no error.
    assert user_store.run("list", f"{user_store.user}-nobody") == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "no sessions for this user\n")
    assert user_store.run("list", f"{user_store.user}-nobody", "--json") == 0
    assert capsys.readouterr().out == ""


def test_revoke_a_users_sessions(user_store: UserStore, capsys: pytest.CaptureFixture[str]) -> None:
    devices = [user_store.device().sign_in(user_store.user) for _ in range(2)]
    other = user_store.device().sign_in(f"{user_store.user}-other")

    assert user_store.run("revoke", user_store.user) == 0
    assert capsys.readouterr().out == "revoked 2 session(s)\n"
    for device in devices:
        assert device.session() == {}  # the app sees an empty session
    assert other.session() == {"user_id": f"{user_store.user}-other"}
    assert user_store.run("list", user_store.user, "--json") == 0
    assert capsys.readouterr().out == ""
    # Nothing is left to revoke.
    assert user_store.run("revoke", user_store.user) == 0
    assert capsys.readouterr().out == "revoked 0 session(s)\n"


def test_revoke_all_but_one(user_store: UserStore, capsys: pytest.CaptureFixture[str]) -> None:
    kept, *others = [user_store.device().sign_in(user_store.user) for _ in range(3)]
    stranger = user_store.device().sign_in(f"{user_store.user}-other")

    # A handle that is not one of the user's sessions revokes nothing (a typo must not log the
    # user out everywhere).
    for handle in (stranger.handle, private_id(new_session_id())):
        assert user_store.run("revoke", user_store.user, "--keep", handle) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "no such session of this user to keep; nothing was revoked" in captured.err
    assert all(device.session() == {"user_id": user_store.user} for device in (kept, *others))

    assert user_store.run("revoke", user_store.user, "--keep", kept.handle) == 0
    assert capsys.readouterr().out == "revoked 2 session(s)\n"
    assert kept.session() == {"user_id": user_store.user}
    assert [device.session() for device in others] == [{}, {}]
    assert stranger.session() == {"user_id": f"{user_store.user}-other"}
    assert user_store.run("list", user_store.user, "--json") == 0
    assert [json.loads(line)["handle"] for line in capsys.readouterr().out.splitlines()] == [kept.handle]


def test_revoke_one_session_by_its_handle(user_store: UserStore, capsys: pytest.CaptureFixture[str]) -> None:
    phone, laptop = (user_store.device().sign_in(user_store.user) for _ in range(2))

    assert user_store.run("revoke", "--handle", laptop.handle) == 0
    assert capsys.readouterr().out == "revoked 1 session(s)\n"
    assert laptop.session() == {}
    assert phone.session() == {"user_id": user_store.user}
    assert user_store.run("list", user_store.user, "--json") == 0
    assert [json.loads(line)["handle"] for line in capsys.readouterr().out.splitlines()] == [phone.handle]

    # Gone now, or never there: no such session, exit 1.
    for handle in (laptop.handle, private_id(new_session_id())):
        assert user_store.run("revoke", "--handle", handle) == 1
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("", "no such session\n")
    assert phone.session() == {"user_id": user_store.user}


def test_delete_takes_the_session_out_of_its_users_list(
    user_store: UserStore, capsys: pytest.CaptureFixture[str]
) -> None:
    phone, laptop = (user_store.device().sign_in(user_store.user) for _ in range(2))
    assert user_store.run("delete", laptop.session_id) == 0
    assert capsys.readouterr().out == "deleted\n"
    assert laptop.session() == {}
    assert user_store.run("list", user_store.user, "--json") == 0
    # No session left listed that is not there any more.
    assert [json.loads(line)["handle"] for line in capsys.readouterr().out.splitlines()] == [phone.handle]


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_user_commands_take_the_store_options_before_or_after(
    before: bool, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    location = request.getfixturevalue("redis_location")
    client = redis.Redis.from_url(location)
    try:
        app = make_app(
            [Route("/sign-in", _sign_in), Route("/whoami", _whoami)],
            backend=RedisBackend(client, key_prefix="app:"),
            user_key="user_id",
        )
        phone, laptop = (Device(app, "Device/1.0", "10.0.0.1").sign_in("bo") for _ in range(2))
        prefix = ["--key-prefix", "app:"]

        def run(command: str, *arguments: str) -> int:
            if before:
                return main([*prefix, command, location, *arguments])
            return main([command, location, *arguments, *prefix])

        assert run("list", "bo", "--json") == 0
        handles = {json.loads(line)["handle"] for line in capsys.readouterr().out.splitlines()}
        assert handles == {phone.handle, laptop.handle}
        assert run("revoke", "--handle", laptop.handle) == 0
        assert laptop.session() == {}
        assert run("revoke", "bo") == 0
        assert capsys.readouterr().out.endswith("revoked 1 session(s)\n")
        assert phone.session() == {}
        # Without the option the default prefix is used, which holds nothing of this app's.
        phone.sign_in("bo")
        assert main(["list", location, "bo", "--json"]) == 0
        assert capsys.readouterr().out == ""
        assert main(["revoke", location, "--handle", phone.handle]) == 1
        assert phone.session() == {"user_id": "bo"}
    finally:
        client.close()


def test_list_escapes_control_characters_of_a_user_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "sessions"
    app = make_app(
        [Route("/sign-in", _sign_in), Route("/whoami", _whoami)],
        backend=FileBackend(directory),
        user_key="user_id",
        track_client=True,
    )
    hostile = "Evil\x1b]0;owned\x07\x9b31m " + "x" * 60
    Device(app, hostile, "10.0.0.9").sign_in("cy")
    assert main(["list", str(directory), "cy"]) == 0
    out = capsys.readouterr().out
    assert not any(char in out for char in "\x1b\x07\x9b")
    row = _table(out)[1]
    assert row[4].startswith("Evil\\x1b]0;owned\\x07\\x9b31m xxx")
    assert len(row[4]) == 40
    assert row[4].endswith("…")  # shortened in the table
    assert main(["list", str(directory), "cy", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.isascii()
    assert json.loads(out)["user_agent"] == hostile  # whole, and escaped by JSON


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["revoke", "{dir}"], "revoke needs a USER, or --handle HANDLE"),
        (["revoke", "{dir}", "ann", "--handle", "{handle}"], "revoke takes a USER or --handle, not both"),
        (["revoke", "{dir}", "--handle", "{handle}", "--keep", "{handle}"], "--keep applies to revoking"),
        (["revoke", "{dir}", "--handle", "{id}"], "--handle takes a session handle"),
        (["revoke", "{dir}", "ann", "--keep", "{id}"], "--keep takes a session handle"),
        (["revoke", "{dir}", "--handle", "{handle}x"], "--handle takes a session handle"),
        (["list", "{dir}", ""], "USER is empty"),
        (["list", "{dir}", "ann", "--table", "t"], "--table applies to SQL databases only"),
        (["revoke", "{dir}", "ann", "--cluster"], "--cluster applies to Redis URLs only"),
    ],
)
def test_user_command_usage_errors_exit_2_without_echoing_an_id(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    session_id = new_session_id()
    values = {"{dir}": str(directory), "{handle}": private_id(new_session_id()), "{id}": session_id}
    values["{handle}x"] = values["{handle}"] + "0"
    assert main([values.get(argument, argument) for argument in arguments]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert session_id not in err
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize("command", [["list", "ann"], ["revoke", "ann"]])
@pytest.mark.parametrize("location", ["redis://127.0.0.1:1/0", "memcache://127.0.0.1:1"])
def test_user_commands_on_an_unreachable_server_exit_2(
    command: list[str], location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command[0], location, *command[1:]]) == 2
    assert capsys.readouterr().err.startswith("error: session store")


def test_list_as_a_program(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    app = make_app(
        [Route("/sign-in", _sign_in), Route("/whoami", _whoami)],
        backend=FileBackend(directory),
        user_key="user_id",
        track_client=True,
    )
    device = Device(app, "Device/1.0", "10.0.0.1").sign_in("dee")
    done = subprocess.run(
        [sys.executable, "-m", "starlette_session", "list", str(directory), "dee", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["handle"] == device.handle


@pytest.mark.parametrize("option", ["--handle", "--keep"])
def test_an_option_value_that_starts_with_a_dash_is_a_value(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    dashed = "-" + new_session_id()[1:]  # base64url ids may start with "-"
    arguments = ["revoke", str(directory), *(["ann"] if option == "--keep" else []), option, dashed]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert f"{option} takes a session handle" in error
    assert dashed not in error
