"""The SQLAlchemy session table: its models, and the statements the backend runs on it.

Kept apart from ``sqlalchemy.py`` because this module imports SQLAlchemy at the top, and the
backend module must import without it. Import the models from
``starlette_session.backends.sqlalchemy``, which loads this module on first use.

Every function taking a ``Connection`` runs inside the caller's transaction, on a sync
connection (the backend runs them through ``AsyncConnection.run_sync`` for async engines);
``read_async``, the one statement of a read, opens its own transaction on an ``AsyncEngine``.
Session ids and values are always bound parameters.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import (
    URL,
    Connection,
    Double,
    Engine,
    Insert,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    insert,
    inspect,
    make_url,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from starlette_session.ids import MAX_ID_LENGTH

#: The name of the default table.
DEFAULT_TABLE_NAME = "starlette_sessions"


class SessionModelMixin:
    """The three columns the backend needs; mix it into your own declarative model.

    ``expires_at`` is a Unix time in seconds (a double), not a ``DateTime``: it compares the
    same way on every database, with no time-zone conversion, and it is indexed so that
    ``delete_expired`` does not scan the table.
    """

    id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class Base(DeclarativeBase):
    """The declarative base of the default model (its own ``MetaData``)."""


class SessionRecord(SessionModelMixin, Base):
    """The default model: the ``starlette_sessions`` table."""

    __tablename__ = DEFAULT_TABLE_NAME


def create_table(conn: Connection, table: Table) -> None:
    table.create(conn, checkfirst=True)


def has_table(conn: Connection, table: Table) -> bool:
    return inspect(conn).has_table(table.name, schema=table.schema)


# Per table, the read's statement, built once with bound parameters: building a ``select``
# costs more Python than the rest of a read's SQLAlchemy work (``benchmarks.call_counts``).
_READ_STATEMENTS: weakref.WeakKeyDictionary[Table, Select[Any]] = weakref.WeakKeyDictionary()


def read_statement(table: Table) -> Select[Any]:
    """The read's statement for ``table``, with the parameters ``session_id`` and ``now``."""
    query = _READ_STATEMENTS.get(table)
    if query is None:
        query = _READ_STATEMENTS[table] = select(table.c.data).where(
            table.c.id == bindparam("session_id"), table.c.expires_at > bindparam("now")
        )
    return query


def read(conn: Connection, table: Table, session_id: str, now: float) -> bytes | None:
    row = conn.execute(read_statement(table), {"session_id": session_id, "now": now}).first()
    # Some drivers return memoryview for binary columns.
    return None if row is None else bytes(row[0])


async def read_async(engine: AsyncEngine, table: Table, session_id: str, now: float) -> bytes | None:
    """``read`` on an ``AsyncEngine``, awaited directly (no ``run_sync`` for the one statement)."""
    async with engine.begin() as conn:
        result = await conn.execute(read_statement(table), {"session_id": session_id, "now": now})
        row = result.first()
    return None if row is None else bytes(row[0])


def write(conn: Connection, table: Table, values: dict[str, Any]) -> None:
    statement = upsert_statement(conn.dialect.name, table, values)
    if statement is None:
        update_then_insert(conn, table, values)
    else:
        conn.execute(statement)


def upsert_statement(dialect_name: str, table: Table, values: dict[str, Any]) -> Insert | None:
    """Return the dialect's one-statement upsert, or ``None`` for a dialect without one we use."""
    changed = [key for key in values if key != "id"]
    if dialect_name == "postgresql":
        pg_statement = postgresql.insert(table).values(values)
        return pg_statement.on_conflict_do_update(
            index_elements=[table.c.id], set_={key: pg_statement.excluded[key] for key in changed}
        )
    if dialect_name == "sqlite":
        sqlite_statement = sqlite.insert(table).values(values)
        return sqlite_statement.on_conflict_do_update(
            index_elements=[table.c.id], set_={key: sqlite_statement.excluded[key] for key in changed}
        )
    if dialect_name in ("mysql", "mariadb"):
        mysql_statement = mysql.insert(table).values(values)
        return mysql_statement.on_duplicate_key_update(
            {key: mysql_statement.inserted[key] for key in changed}
        )
    return None


def update_then_insert(conn: Connection, table: Table, values: dict[str, Any]) -> None:
    """The portable upsert: ``UPDATE``, then ``INSERT`` if no row matched (one transaction)."""
    changes = {key: value for key, value in values.items() if key != "id"}
    updated = conn.execute(update(table).where(table.c.id == values["id"]).values(changes))
    if updated.rowcount == 0:
        conn.execute(insert(table).values(values))


def create(conn: Connection, table: Table, values: dict[str, Any], now: float) -> bool:
    """Insert the row unless a live row has its id (an expired one is overwritten)."""
    changed = {key: value for key, value in values.items() if key != "id"}
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        module = postgresql if dialect == "postgresql" else sqlite
        statement = module.insert(table).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={key: statement.excluded[key] for key in changed},
            where=table.c.expires_at <= now,
        )
        return bool(conn.execute(statement).rowcount)
    with conn.begin_nested():
        conn.execute(delete(table).where(table.c.id == values["id"], table.c.expires_at <= now))
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(values))
    except IntegrityError:
        return False
    return True


def replace(
    conn: Connection, table: Table, values: dict[str, Any], now: float, version: bytes | None = None
) -> bool:
    """Update the row only if it is live (and, with ``version``, still holds those bytes)."""
    changed = {key: value for key, value in values.items() if key != "id"}
    condition = [table.c.id == values["id"], table.c.expires_at > now]
    if version is not None:
        condition.append(table.c.data == version)
    return bool(conn.execute(update(table).where(*condition).values(changed)).rowcount)


def remove(conn: Connection, table: Table, session_id: str) -> None:
    conn.execute(delete(table).where(table.c.id == session_id))


def touch(conn: Connection, table: Table, session_id: str, now: float, new_expires_at: float) -> bool:
    statement = (
        update(table)
        .where(table.c.id == session_id, table.c.expires_at > now)
        .values(expires_at=new_expires_at)
    )
    return conn.execute(statement).rowcount > 0


def delete_expired(conn: Connection, table: Table, now: float) -> int:
    return int(conn.execute(delete(table).where(table.c.expires_at <= now)).rowcount)


# -- engines, errors and tables, so that the backend module needs no SQLAlchemy import -------

#: What a failing database raises: SQLAlchemy's errors, and OSError, which asyncpg raises
#: unwrapped for a refused or timed-out connection.
STORE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)


def is_engine(client: object) -> bool:
    return isinstance(client, (Engine, AsyncEngine))


def async_engine_or_none(engine: Engine | AsyncEngine) -> AsyncEngine | None:
    return engine if isinstance(engine, AsyncEngine) else None


def sync_engine_or_none(engine: Engine | AsyncEngine) -> Engine | None:
    return engine if isinstance(engine, Engine) else None


def engine_for_url(url: str | URL, options: dict[str, Any]) -> Engine | AsyncEngine:
    """Create an ``AsyncEngine`` for an async driver's URL, else a sync ``Engine``.

    Raises:
        ValueError: the URL cannot be parsed, names an unknown dialect, or is in-memory SQLite.
    """
    try:
        parsed = make_url(url)
        is_async = bool(parsed.get_dialect().is_async)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ValueError(f"not a usable SQLAlchemy database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError(
            "an in-memory SQLite database cannot hold sessions (each connection gets its own "
            "empty database); use a file, e.g. 'sqlite:///sessions.db'"
        )
    # SQLAlchemy's error texts list the statement's parameters, which include the session's
    # key: an engine made here keeps them out (an engine the user passes decides for itself).
    options.setdefault("hide_parameters", True)
    if is_async:
        return create_async_engine(parsed, **options)
    return create_engine(parsed, **options)


def table_of(model: object) -> Table | None:
    """Return the ``Table`` of a declarative model (or the ``Table`` itself), else ``None``."""
    table = model if isinstance(model, Table) else getattr(model, "__table__", None)
    return table if isinstance(table, Table) else None


def default_table(name: str | None) -> Table:
    """Return the default table, or a copy of its columns and index under another name."""
    table = table_of(SessionRecord)
    assert table is not None  # a declarative model always has its Table
    if name is None or name == table.name:
        return table
    return table.to_metadata(MetaData(), name=name)
