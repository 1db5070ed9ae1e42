"""SQL databases through SQLAlchemy 2.x: sessions as rows of one table.

Takes an ``Engine`` or an ``AsyncEngine``. An ``AsyncEngine`` (``postgresql+asyncpg``,
``sqlite+aiosqlite``, ...) is awaited on the event loop; a sync ``Engine`` (``postgresql+psycopg``,
``sqlite``, ``mysql+pymysql``, ...) runs each operation, one transaction, in a worker thread
through ``starlette_session._bridge.run_sync``.

Expired rows are never returned, but the database does not delete them by itself: call
``delete_expired()`` from time to time (``python -m starlette_session delete-expired``).

Importing this module does not import SQLAlchemy; constructing the backend does. The table
models (``SessionModelMixin``, ``Base``, ``SessionRecord``) are loaded on first access.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio

from starlette_session import expiry
from starlette_session._bridge import run_sync
from starlette_session.backends.base import SessionBackend, backend_error
from starlette_session.exceptions import BackendError, ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine, Table
    from sqlalchemy.ext.asyncio import AsyncEngine

    from starlette_session.backends._sqlalchemy_table import Base, SessionModelMixin, SessionRecord

__all__ = ["Base", "SQLAlchemyBackend", "SessionModelMixin", "SessionRecord"]

T = TypeVar("T")

_MODEL_NAMES = frozenset({"Base", "SessionModelMixin", "SessionRecord"})
_REQUIRED_COLUMNS = ("id", "data", "expires_at")


def __getattr__(name: str) -> Any:
    # The models are mapped classes, so defining them imports SQLAlchemy: load them on demand.
    if name in _MODEL_NAMES:
        _require_sqlalchemy()
        from starlette_session.backends import _sqlalchemy_table  # noqa: PLC0415 - imports SQLAlchemy

        return getattr(_sqlalchemy_table, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _require_sqlalchemy() -> None:
    try:
        import sqlalchemy  # noqa: F401, PLC0415 - optional dependency, imported on use
    except ImportError as exc:
        raise MissingDependencyError("sqlalchemy", "sqlalchemy") from exc


class SQLAlchemyBackend(SessionBackend):
    """Sessions in a SQL table, through a SQLAlchemy ``Engine`` or ``AsyncEngine``.

    A sync ``Engine`` is bridged to a worker thread (one thread hop per operation); an
    ``AsyncEngine`` is awaited directly. A loaded session is saved with ``UPDATE .. WHERE id``
    on a live row (checked by its row count), a new one with an ``INSERT`` that never
    overwrites a live row, a merge-mode update with ``UPDATE .. WHERE data = <bytes read>``.
    ``set`` (outside a request) is one upsert. See ``docs/backends/sqlalchemy.md``.

    Args:
        engine: the ``Engine`` or ``AsyncEngine``; the backend never disposes an engine it
            was given.
        model: a declarative model built on ``SessionModelMixin`` (or a ``Table``) with at
            least the columns ``id``, ``data`` and ``expires_at``. Default: ``SessionRecord``,
            the ``starlette_sessions`` table.
        table_name: the default columns under another table name (not with ``model``).
        create_table: create the table (this table only, if missing) on first use. With
            ``False``, create it yourself: by migration, or ``create_table()``.
        clock: returns the current Unix time; for tests. Default: ``time.time``.

    Raises:
        MissingDependencyError: SQLAlchemy is not installed.
        ConfigurationError: ``engine`` is not an engine, or the model lacks a required column.

    To fill extra columns of your own model, subclass the backend and override ``values_for``.
    """

    extra: ClassVar[str] = "sqlalchemy"

    def __init__(
        self,
        engine: Engine | AsyncEngine,
        *,
        model: type[Any] | Table | None = None,
        table_name: str | None = None,
        create_table: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        _require_sqlalchemy()
        from starlette_session.backends import _sqlalchemy_table as sql  # noqa: PLC0415

        if not sql.is_engine(engine):
            raise ConfigurationError(
                "SQLAlchemyBackend needs a sqlalchemy Engine or AsyncEngine (or, through "
                f"from_client/from_url, a database URL), not {type(engine).__qualname__}"
            )
        self._sql = sql
        self.engine = engine
        self._async_engine = sql.async_engine_or_none(engine)
        self._sync_engine = sql.sync_engine_or_none(engine)
        self.table: Table = self._resolve_table(model, table_name)
        self.create_table_on_first_use = create_table
        self._clock = time.time if clock is None else clock
        self._owns_engine = False
        self._table_ready = False
        self._table_lock = anyio.Lock()
        self.blocking = self._async_engine is None
        self.store_errors = sql.STORE_ERRORS
        where = engine.url.render_as_string(hide_password=True)
        self.name = f"SQL {where} (table {self.table.name!r})"

    def _resolve_table(self, model: type[Any] | Table | None, table_name: str | None) -> Table:
        if model is None:
            return self._sql.default_table(table_name)
        if table_name is not None:
            raise ConfigurationError(
                "give SQLAlchemyBackend either model= or table_name=, not both; "
                "set __tablename__ on your model instead"
            )
        table = self._sql.table_of(model)
        if table is None:
            raise ConfigurationError(
                f"SQLAlchemyBackend(model=...) must be a declarative model or a Table, not {model!r}; "
                "build your model on SessionModelMixin"
            )
        missing = [name for name in _REQUIRED_COLUMNS if name not in table.c]
        if missing:
            raise ConfigurationError(
                f"table {table.name!r} lacks the column(s) {', '.join(missing)}; "
                "build your model on SessionModelMixin"
            )
        return table

    # -- construction from the middleware's backend_client -----------------------------

    @classmethod
    def accepts(cls, client: object) -> bool:
        """Return whether ``client`` is a SQLAlchemy ``Engine`` or ``AsyncEngine``.

        URL strings are not auto-detected; pass them with ``backend_type=BackendType.sqlalchemy``.
        """
        if not type(client).__module__.startswith("sqlalchemy"):
            return False
        from starlette_session.backends import _sqlalchemy_table as sql  # noqa: PLC0415

        return sql.is_engine(client)

    @classmethod
    def from_client(cls, client: Any) -> SQLAlchemyBackend:
        """Build the backend from an ``Engine``, an ``AsyncEngine`` or a database URL.

        A URL (``str`` or ``sqlalchemy.URL``) goes to ``from_url``, so the backend owns that engine.

        Raises:
            ConfigurationError: ``client`` is none of these.
        """
        if isinstance(client, str) or type(client).__module__ == "sqlalchemy.engine.url":
            return cls.from_url(client)
        return cls(client)

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        engine_options: dict[str, Any] | None = None,
        **backend_options: Any,
    ) -> SQLAlchemyBackend:
        """Create an engine for ``url`` and build the backend around it.

        An async driver (``+asyncpg``, ``+aiosqlite``, ``+psycopg_async``, ``+aiomysql``, ...)
        gives an ``AsyncEngine``, any other a sync ``Engine``. The backend owns this engine and
        disposes it in ``aclose()``.

        Args:
            url: a SQLAlchemy database URL, e.g. ``"sqlite:///sessions.db"``.
            engine_options: keyword arguments for ``create_engine``/``create_async_engine``.
            **backend_options: keyword arguments for the backend (``model``, ``table_name``, ...).

        Raises:
            ConfigurationError: the URL cannot be parsed, names an unknown dialect, or is an
                in-memory SQLite database.
            MissingDependencyError: SQLAlchemy is not installed.
        """
        _require_sqlalchemy()
        from starlette_session.backends import _sqlalchemy_table as sql  # noqa: PLC0415

        try:
            engine = sql.engine_for_url(url, dict(engine_options or {}))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        backend = cls(engine, **backend_options)
        backend._owns_engine = True
        return backend

    # -- the table -------------------------------------------------------------------------

    async def create_table(self) -> None:
        """Create the session table and its index, if missing (no other table is touched).

        Safe to call from several processes at once.

        Raises:
            BackendError: the database failed or refused.
        """
        async with self._table_lock:
            if self._table_ready:
                return
            try:
                await self._run("create the session table", self._sql.create_table, self.table)
            except BackendError:
                # Another process may have created it between our check and our CREATE.
                try:
                    exists = await self._run("look for the session table", self._sql.has_table, self.table)
                except BackendError:
                    exists = False
                if not exists:
                    raise
            self._table_ready = True

    def create_table_sync(self) -> None:
        """Create the session table if missing, from sync code (sync ``Engine`` only).

        Raises:
            ConfigurationError: the backend has an ``AsyncEngine``; use ``await create_table()``.
            BackendError: the database failed or refused.
        """
        if self._async_engine is not None:
            raise ConfigurationError(
                "create_table_sync() needs a sync Engine; with an AsyncEngine use await create_table()"
            )
        try:
            self._in_transaction(self._sql.create_table, self.table)
        except self._sql.STORE_ERRORS as exc:
            try:
                exists = self._in_transaction(self._sql.has_table, self.table)
            except self._sql.STORE_ERRORS:
                exists = False
            if not exists:
                raise backend_error(self.name, "create the session table", exc) from None
        self._table_ready = True

    # -- the store -------------------------------------------------------------------------

    def values_for(self, session_id: str, data: bytes, expires_at: float) -> dict[str, Any]:
        """Return the column values of the row written for a session; override to add columns.

        Called on every write, on the event loop: keep it quick and free of I/O. The upsert
        writes every returned column, on insert and on update alike.

        Args:
            session_id: the session id (the primary key).
            data: the serialized session; ``self.serializer.loads(data)`` gives the dict.
            expires_at: the Unix time at which the row expires.

        Returns:
            Column key to value; keep the ``id``, ``data`` and ``expires_at`` given here.
        """
        return {"id": session_id, "data": data, "expires_at": expires_at}

    async def read(self, session_id: str) -> bytes | None:
        if self._async_engine is not None:  # one statement: awaited, not through run_sync
            if self.create_table_on_first_use and not self._table_ready:
                await self.create_table()
            data: bytes | None = await self.call(
                "read a session",
                self._sql.read_async,
                self._async_engine,
                self.table,
                session_id,
                self._now(),
                redact=(session_id,),
            )
            return data
        return await self._execute(
            "read a session", self._sql.read, self.table, session_id, self._now(), redact=session_id
        )

    def _values(self, session_id: str, data: bytes, ttl: int, now: float) -> dict[str, Any]:
        values = self.values_for(session_id, data, expiry.expires_at(ttl, now))
        unknown = sorted(set(values) - set(self.table.c.keys()))
        if unknown:
            raise ConfigurationError(
                f"values_for() returned {', '.join(unknown)}: not columns of table {self.table.name!r}"
            )
        return values

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        values = self._values(session_id, data, ttl, self._now())
        await self._execute("write a session", self._sql.write, self.table, values, redact=session_id)

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        now = self._now()
        values = self._values(session_id, data, ttl, now)
        return await self._execute(
            "create a session", self._sql.create, self.table, values, now, redact=session_id
        )

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        now = self._now()
        values = self._values(session_id, data, ttl, now)
        return await self._execute(
            "replace a session", self._sql.replace, self.table, values, now, redact=session_id
        )

    async def compare_and_swap(self, session_id: str, version: Any, data: bytes, ttl: int) -> bool:
        now = self._now()
        values = self._values(session_id, data, ttl, now)
        return await self._execute(
            "update a session", self._sql.replace, self.table, values, now, version, redact=session_id
        )

    async def remove(self, session_id: str) -> None:
        await self._execute("remove a session", self._sql.remove, self.table, session_id, redact=session_id)

    async def touch(self, session_id: str, ttl: int) -> bool:
        now = self._now()
        return await self._execute(
            "touch a session",
            self._sql.touch,
            self.table,
            session_id,
            now,
            expiry.expires_at(ttl, now),
            redact=session_id,
        )

    async def delete_expired(self) -> int:
        return await self._execute(
            "delete expired sessions", self._sql.delete_expired, self.table, self._now()
        )

    async def aclose(self) -> None:
        """Dispose the engine if the backend created it (``from_url``); a given one stays open."""
        if not self._owns_engine:
            return
        if self._async_engine is not None:
            await self._async_engine.dispose()
        elif self._sync_engine is not None:
            await run_sync(self._sync_engine.dispose)

    # -- running an operation: one transaction each ----------------------------------------

    async def _execute(
        self, action: str, operation: Callable[..., T], /, *args: Any, redact: str | None = None
    ) -> T:
        if self.create_table_on_first_use and not self._table_ready:
            await self.create_table()
        return await self._run(action, operation, *args, redact=redact)

    async def _run(
        self, action: str, operation: Callable[..., T], /, *args: Any, redact: str | None = None
    ) -> T:
        transaction = self._in_transaction if self._async_engine is None else self._in_async_transaction
        secrets = () if redact is None else (redact,)
        result: T = await self.call(action, transaction, operation, *args, redact=secrets)
        return result

    async def _in_async_transaction(self, operation: Callable[..., T], /, *args: Any) -> T:
        assert self._async_engine is not None  # only called with an AsyncEngine
        async with self._async_engine.begin() as conn:
            return await conn.run_sync(operation, *args)

    def _in_transaction(self, operation: Callable[..., T], /, *args: Any) -> T:
        assert self._sync_engine is not None  # only called with a sync Engine
        with self._sync_engine.begin() as conn:
            return operation(conn, *args)

    def _now(self) -> float:
        # float(): asyncpg binds a DOUBLE PRECISION parameter only from a float.
        return float(self._clock())
