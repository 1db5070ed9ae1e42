"""SQLAlchemyBackend on four real engines: SQLite and PostgreSQL, each sync and async."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import starlette_session.backends.sqlalchemy as sqlalchemy_backend_module
from starlette_session.backends import BackendType, _sqlalchemy_table, backend_for_client, create_backend
from starlette_session.backends.sqlalchemy import SessionModelMixin, SessionRecord, SQLAlchemyBackend
from starlette_session.exceptions import BackendError, ConfigurationError, MissingDependencyError
from tests.helpers import T0, FakeClock, closed_port

pytestmark = pytest.mark.anyio

SID = "abcdefghijklmnop0123456789_-ABCD"
OTHER = "zyxwvutsrqponmlk9876543210-_ZYXW"

ENGINES = ["sqlite", "aiosqlite", "psycopg", "asyncpg"]
SCHEMES = {
    "sqlite": "sqlite",
    "aiosqlite": "sqlite+aiosqlite",
    "psycopg": "postgresql+psycopg",
    "asyncpg": "postgresql+asyncpg",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=ENGINES)
def engine_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def database_url(engine_kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The SQLAlchemy URL of this test's database, with the driver of ``engine_kind``."""
    scheme = SCHEMES[engine_kind]
    if scheme.startswith("sqlite"):
        return f"{scheme}:///{tmp_path}/s.db"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn.replace("postgresql://", f"{scheme}://", 1)


@pytest.fixture
def table_name() -> str:
    # Unique per test: the PostgreSQL database is shared by the whole test session.
    return f"sessions_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[sa.Engine | AsyncEngine]:
    built = sa.make_url(database_url).get_dialect().is_async
    engine: sa.Engine | AsyncEngine = (
        create_async_engine(database_url) if built else sa.create_engine(database_url)
    )
    try:
        yield engine
    finally:
        await dispose(engine)


async def dispose(engine: sa.Engine | AsyncEngine) -> None:
    if isinstance(engine, AsyncEngine):
        await engine.dispose()
    else:
        engine.dispose()


async def run(engine: sa.Engine | AsyncEngine, operation: Callable[[sa.Connection], Any]) -> Any:
    """Run ``operation`` on a sync connection of either kind of engine, in a transaction."""
    if isinstance(engine, AsyncEngine):
        async with engine.begin() as conn:
            return await conn.run_sync(operation)
    with engine.begin() as conn:
        return operation(conn)


@pytest.fixture
async def backend(
    engine: sa.Engine | AsyncEngine, table_name: str, clock: FakeClock
) -> AsyncIterator[SQLAlchemyBackend]:
    store = SQLAlchemyBackend(engine, table_name=table_name, clock=clock)
    try:
        yield store
    finally:
        await run(engine, lambda conn: store.table.drop(conn, checkfirst=True))


def count_rows(table: sa.Table) -> Callable[[sa.Connection], int]:
    def count(conn: sa.Connection) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    return count


def has_table(name: str) -> Callable[[sa.Connection], bool]:
    return lambda conn: sa.inspect(conn).has_table(name)


# -- the store ---------------------------------------------------------------------------


async def test_round_trip(backend: SQLAlchemyBackend) -> None:
    await backend.write(SID, b'{"a": 1}', 60)
    assert await backend.read(SID) == b'{"a": 1}'
    assert await backend.read(OTHER) is None


async def test_binary_data_round_trips_unchanged(backend: SQLAlchemyBackend) -> None:
    data = bytes(range(256)) * 40
    await backend.write(SID, data, 60)
    assert await backend.read(SID) == data


async def test_dict_api(backend: SQLAlchemyBackend) -> None:
    await backend.set(SID, {"user": "ann", "n": [1, 2]}, 60)
    assert await backend.get(SID) == {"user": "ann", "n": [1, 2]}
    await backend.delete(SID)
    assert await backend.get(SID) is None


async def test_write_overwrites_in_place(backend: SQLAlchemyBackend, engine: sa.Engine | AsyncEngine) -> None:
    await backend.write(SID, b"first", 60)
    await backend.write(SID, b"second", 60)
    await backend.write(OTHER, b"other", 60)
    assert await backend.read(SID) == b"second"
    assert await backend.read(OTHER) == b"other"
    assert await run(engine, count_rows(backend.table)) == 2


async def test_overwrite_resets_expiry(backend: SQLAlchemyBackend, clock: FakeClock) -> None:
    await backend.write(SID, b"a", 10)
    clock.now = T0 + 8
    await backend.write(SID, b"b", 10)
    clock.now = T0 + 17
    assert await backend.read(SID) == b"b"
    clock.now = T0 + 18
    assert await backend.read(SID) is None


async def test_missing_id(backend: SQLAlchemyBackend) -> None:
    assert await backend.read(SID) is None
    await backend.remove(SID)  # not an error
    assert await backend.touch(SID, 60) is False
    assert await backend.get(SID) is None


async def test_remove(backend: SQLAlchemyBackend) -> None:
    await backend.write(SID, b"a", 60)
    await backend.write(OTHER, b"b", 60)
    await backend.remove(SID)
    assert await backend.read(SID) is None
    assert await backend.read(OTHER) == b"b"


async def test_expired_rows_are_not_returned(
    backend: SQLAlchemyBackend, clock: FakeClock, engine: sa.Engine | AsyncEngine
) -> None:
    await backend.write(SID, b"a", 10)
    clock.now = T0 + 9.5
    assert await backend.read(SID) == b"a"
    clock.now = T0 + 10  # expires_at <= now: expired
    assert await backend.read(SID) is None
    assert await backend.get(SID) is None
    # Still in the table until delete_expired runs.
    assert await run(engine, count_rows(backend.table)) == 1


async def test_past_expires_at_row_is_not_returned(
    backend: SQLAlchemyBackend, engine: sa.Engine | AsyncEngine
) -> None:
    await backend.create_table()
    table = backend.table
    await run(
        engine, lambda conn: conn.execute(table.insert().values(id=SID, data=b"old", expires_at=T0 - 1))
    )
    assert await backend.read(SID) is None
    assert await backend.touch(SID, 60) is False


async def test_delete_expired_counts(
    backend: SQLAlchemyBackend, clock: FakeClock, engine: sa.Engine | AsyncEngine
) -> None:
    assert await backend.delete_expired() == 0
    for index in range(3):
        await backend.write(f"short-{index}", b"s", 10)
    await backend.write(SID, b"long", 100)
    await backend.write(OTHER, b"long", 100)
    clock.now = T0 + 50
    assert await backend.delete_expired() == 3
    assert await backend.delete_expired() == 0
    assert await backend.read(SID) == b"long"
    assert await backend.read(OTHER) == b"long"
    assert await run(engine, count_rows(backend.table)) == 2


async def test_delete_expired_agrees_with_read_at_the_boundary(
    backend: SQLAlchemyBackend, clock: FakeClock
) -> None:
    await backend.write(SID, b"a", 10)
    clock.now = T0 + 10  # the moment read stops returning it
    assert await backend.read(SID) is None
    assert await backend.delete_expired() == 1


async def test_touch_extends_expiry(backend: SQLAlchemyBackend, clock: FakeClock) -> None:
    await backend.write(SID, b"a", 10)
    clock.now = T0 + 5
    assert await backend.touch(SID, 10) is True
    clock.now = T0 + 14
    assert await backend.read(SID) == b"a"
    clock.now = T0 + 15
    assert await backend.read(SID) is None
    assert await backend.touch(SID, 10) is False  # an expired row is not revived
    assert await backend.read(SID) is None


async def test_touch_keeps_data(backend: SQLAlchemyBackend) -> None:
    await backend.write(SID, b"keep", 10)
    assert await backend.touch(SID, 1000) is True
    assert await backend.read(SID) == b"keep"


async def test_ids_are_bound_parameters(backend: SQLAlchemyBackend) -> None:
    hostile = "x' OR '1'='1"
    await backend.write(SID, b"victim", 60)
    assert await backend.read(hostile) is None
    await backend.remove(hostile)
    assert await backend.read(SID) == b"victim"
    await backend.write(hostile, b"odd", 60)
    assert await backend.read(hostile) == b"odd"


async def test_concurrent_first_writes_create_the_table_once(backend: SQLAlchemyBackend) -> None:
    async with anyio.create_task_group() as group:
        for index in range(12):
            group.start_soon(backend.write, f"id-{index}", f"v{index}".encode(), 60)
    for index in range(12):
        assert await backend.read(f"id-{index}") == f"v{index}".encode()


async def test_generic_upsert_fallback(backend: SQLAlchemyBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    # Databases without a native upsert get UPDATE, then INSERT when no row matched.
    monkeypatch.setattr(_sqlalchemy_table, "upsert_statement", lambda *args: None)
    await backend.write(SID, b"first", 60)
    await backend.write(SID, b"second", 60)
    assert await backend.read(SID) == b"second"


def test_native_upsert_statements() -> None:
    table = _sqlalchemy_table.default_table(None)
    values = {"id": SID, "data": b"x", "expires_at": T0}
    statement = _sqlalchemy_table.upsert_statement("mysql", table, values)
    assert statement is not None
    compiled = str(statement.compile(dialect=mysql.dialect()))
    assert "ON DUPLICATE KEY UPDATE" in compiled
    assert SID not in compiled  # bound, not inlined
    assert _sqlalchemy_table.upsert_statement("oracle", table, values) is None


# -- the table -----------------------------------------------------------------------------


async def test_table_is_created_on_first_use(
    backend: SQLAlchemyBackend, engine: sa.Engine | AsyncEngine, table_name: str
) -> None:
    assert await run(engine, has_table(table_name)) is False
    assert await backend.read(SID) is None
    assert await run(engine, has_table(table_name)) is True
    indexes = await run(engine, lambda conn: sa.inspect(conn).get_indexes(table_name))
    assert [index["column_names"] for index in indexes] == [["expires_at"]]


async def test_create_table_false_then_helper(engine: sa.Engine | AsyncEngine, table_name: str) -> None:
    backend = SQLAlchemyBackend(engine, table_name=table_name, create_table=False)
    try:
        with pytest.raises(BackendError, match=table_name):
            await backend.write(SID, b"a", 60)
        assert await run(engine, has_table(table_name)) is False
        await backend.create_table()
        await backend.create_table()  # idempotent
        await backend.write(SID, b"a", 60)
        assert await backend.read(SID) == b"a"
    finally:
        await run(engine, lambda conn: backend.table.drop(conn, checkfirst=True))


async def test_create_table_when_another_process_made_it(
    engine: sa.Engine | AsyncEngine, table_name: str
) -> None:
    first = SQLAlchemyBackend(engine, table_name=table_name)
    second = SQLAlchemyBackend(engine, table_name=table_name)
    try:
        await first.create_table()
        await second.create_table()
        await first.write(SID, b"a", 60)
        assert await second.read(SID) == b"a"
    finally:
        await run(engine, lambda conn: first.table.drop(conn, checkfirst=True))


async def test_create_table_sync(engine: sa.Engine | AsyncEngine, table_name: str) -> None:
    backend = SQLAlchemyBackend(engine, table_name=table_name, create_table=False)
    if isinstance(engine, AsyncEngine):
        with pytest.raises(ConfigurationError, match="await create_table"):
            backend.create_table_sync()
        return
    try:
        backend.create_table_sync()
        backend.create_table_sync()
        assert await run(engine, has_table(table_name)) is True
        await backend.write(SID, b"a", 60)
        assert await backend.read(SID) == b"a"
    finally:
        await run(engine, lambda conn: backend.table.drop(conn, checkfirst=True))


async def test_a_failing_database_raises_backend_error(
    backend: SQLAlchemyBackend, engine: sa.Engine | AsyncEngine
) -> None:
    await backend.write(SID, b"a", 60)
    await run(engine, backend.table.drop)
    with pytest.raises(BackendError, match="failed to read a session") as caught:
        await backend.read(SID)
    assert caught.value.__cause__ is None  # SQLAlchemy's text lists the parameters: the id
    assert SID not in str(caught.value)
    with pytest.raises(BackendError, match="failed to write a session"):
        await backend.write(SID, b"b", 60)


def test_default_table() -> None:
    engine = sa.create_engine("sqlite://")
    try:
        backend = SQLAlchemyBackend(engine)
        assert backend.table is SessionRecord.__table__
        assert backend.table.name == "starlette_sessions"
        assert {column.name for column in backend.table.columns} == {"id", "data", "expires_at"}
        assert backend.table.c.id.primary_key
        assert backend.table.c.expires_at.index
    finally:
        engine.dispose()


# -- a model of your own ---------------------------------------------------------------------


async def test_custom_model_with_user_id(engine: sa.Engine | AsyncEngine, table_name: str) -> None:
    class MyBase(DeclarativeBase):
        pass

    class UserSession(SessionModelMixin, MyBase):
        __tablename__ = table_name
        user_id: Mapped[int | None] = mapped_column(index=True)

    class UserSessionBackend(SQLAlchemyBackend):
        def values_for(self, session_id: str, data: bytes, expires_at: float) -> dict[str, Any]:
            values = super().values_for(session_id, data, expires_at)
            values["user_id"] = self.serializer.loads(data).get("user_id")
            return values

    backend = UserSessionBackend(engine, model=UserSession)
    table = backend.table
    try:
        await backend.set(SID, {"user_id": 42, "cart": [1]}, 60)
        await backend.set(OTHER, {"anonymous": True}, 60)
        assert await backend.get(SID) == {"user_id": 42, "cart": [1]}

        def user_ids(conn: sa.Connection) -> dict[str, int | None]:
            rows = conn.execute(sa.select(table.c.id, table.c.user_id)).all()
            return {row.id: row.user_id for row in rows}

        assert await run(engine, user_ids) == {backend.key_for(SID): 42, backend.key_for(OTHER): None}
        await backend.set(SID, {"user_id": 7}, 60)  # the upsert updates extra columns too
        assert (await run(engine, user_ids))[backend.key_for(SID)] == 7
    finally:
        await run(engine, lambda conn: table.drop(conn, checkfirst=True))


async def test_values_for_with_an_unknown_column(engine: sa.Engine | AsyncEngine, table_name: str) -> None:
    class Sloppy(SQLAlchemyBackend):
        def values_for(self, session_id: str, data: bytes, expires_at: float) -> dict[str, Any]:
            return {**super().values_for(session_id, data, expires_at), "user_id": 1}

    backend = Sloppy(engine, table_name=table_name, create_table=False)
    with pytest.raises(ConfigurationError, match="user_id"):
        await backend.write(SID, b"{}", 60)


def test_model_validation() -> None:
    engine = sa.create_engine("sqlite://")
    try:

        class Incomplete(DeclarativeBase):
            pass

        class NoExpiry(Incomplete):
            __tablename__ = "no_expiry"
            id: Mapped[str] = mapped_column(primary_key=True)
            data: Mapped[bytes]

        with pytest.raises(ConfigurationError, match="expires_at"):
            SQLAlchemyBackend(engine, model=NoExpiry)
        with pytest.raises(ConfigurationError, match="declarative model or a Table"):
            SQLAlchemyBackend(engine, model=dict)
        with pytest.raises(ConfigurationError, match="not both"):
            SQLAlchemyBackend(engine, model=SessionRecord, table_name="x")
        table = sa.Table(
            "core_sessions",
            sa.MetaData(),
            sa.Column("id", sa.String(128), primary_key=True),
            sa.Column("data", sa.LargeBinary, nullable=False),
            sa.Column("expires_at", sa.Double, nullable=False, index=True),
        )
        assert SQLAlchemyBackend(engine, model=table).table is table
    finally:
        engine.dispose()


# -- construction -------------------------------------------------------------------------


async def test_from_client_with_a_url(database_url: str, table_name: str, engine_kind: str) -> None:
    backend = SQLAlchemyBackend.from_client(database_url)
    assert isinstance(backend.engine, AsyncEngine) is (engine_kind in ("aiosqlite", "asyncpg"))
    assert backend.table.name == "starlette_sessions"
    await backend.aclose()

    backend = SQLAlchemyBackend.from_url(database_url, table_name=table_name)
    try:
        await backend.write(SID, b"a", 60)
        assert await backend.read(SID) == b"a"
    finally:
        await run(backend.engine, lambda conn: backend.table.drop(conn, checkfirst=True))
        await backend.aclose()


async def test_aclose_disposes_only_its_own_engine(database_url: str, table_name: str) -> None:
    owned = create_backend(BackendType.database, sa.make_url(database_url))
    assert isinstance(owned, SQLAlchemyBackend)
    given = SQLAlchemyBackend(owned.engine, table_name=table_name)
    try:
        await given.write(SID, b"a", 60)
        pool = owned.engine.pool
        await given.aclose()
        assert owned.engine.pool is pool
        assert await given.read(SID) == b"a"
        await run(owned.engine, given.table.drop)
    finally:
        await owned.aclose()
    assert owned.engine.pool is not pool  # dispose() replaced the pool


async def test_create_backend_and_detection(engine: sa.Engine | AsyncEngine) -> None:
    for member in (BackendType.sqlalchemy, BackendType.database, "sqlalchemy"):
        backend = create_backend(member, engine)
        assert isinstance(backend, SQLAlchemyBackend)
        assert backend.engine is engine
    detected = backend_for_client(engine)
    assert isinstance(detected, SQLAlchemyBackend)
    assert detected.engine is engine


async def test_accepts(engine: sa.Engine | AsyncEngine) -> None:
    assert SQLAlchemyBackend.accepts(engine)
    assert not SQLAlchemyBackend.accepts("sqlite:///sessions.db")
    assert not SQLAlchemyBackend.accepts(sa.MetaData())
    assert not SQLAlchemyBackend.accepts(object())
    assert not SQLAlchemyBackend.accepts(None)


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ("sqlite://", "in-memory SQLite"),
        ("sqlite+aiosqlite:///:memory:", "in-memory SQLite"),
        ("not a url", "not a usable SQLAlchemy database URL"),
        ("nosuchdb://host/db", "not a usable SQLAlchemy database URL"),
        (object(), "needs a sqlalchemy Engine or AsyncEngine"),
    ],
)
def test_from_client_rejects(client: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SQLAlchemyBackend.from_client(client)


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql+asyncpg"])
async def test_unreachable_database_raises_backend_error(scheme: str) -> None:
    url = f"{scheme}://nobody:secret@127.0.0.1:{closed_port()}/sessions"
    backend = SQLAlchemyBackend.from_url(url)
    try:
        with pytest.raises(BackendError, match="failed to create the session table") as caught:
            await backend.read(SID)
        assert "secret" not in str(caught.value)
        backend.create_table_on_first_use = False
        for attempt in (backend.read(SID), backend.write(SID, b"a", 60), backend.delete_expired()):
            with pytest.raises(BackendError, match=r"127\.0\.0\.1"):
                await attempt
    finally:
        await backend.aclose()


# -- the optional dependency ------------------------------------------------------------------


def test_import_does_not_import_sqlalchemy() -> None:
    code = (
        "import sys, starlette_session.backends.sqlalchemy as m\n"
        "assert not any(name.split('.')[0] == 'sqlalchemy' for name in sys.modules), 'imported'\n"
        "assert m.SQLAlchemyBackend.accepts(object()) is False\n"
        "assert not any(name.split('.')[0] == 'sqlalchemy' for name in sys.modules), 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(MissingDependencyError) as caught:
        SQLAlchemyBackend("sqlite:///x.db")  # type: ignore[arg-type]
    assert caught.value.package == "sqlalchemy"
    assert caught.value.extra == "sqlalchemy"
    assert "starlette-session[sqlalchemy]" in str(caught.value)
    with pytest.raises(MissingDependencyError):
        SQLAlchemyBackend.from_url("sqlite:///x.db")
    with pytest.raises(MissingDependencyError):
        sqlalchemy_backend_module.__getattr__("SessionModelMixin")
