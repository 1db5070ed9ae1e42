"""Maintenance commands: ``python -m starlette_session --help``.

Stores (the ``STORE`` argument):

* ``redis://``, ``rediss://`` or ``unix://`` URL: Redis (``--cluster``: a Redis Cluster, the
  URL naming any of its nodes);
* ``memcache://HOST:PORT[,HOST:PORT...]``: memcached, through pymemcache;
* any other URL: a SQL database through SQLAlchemy (``--table`` if not ``starlette_sessions``);
  a SQLite file must exist;
* a path (or ``file://`` and a path): a ``FileBackend`` directory, which must exist.

Commands:

* ``get STORE ID``: print the session's data as JSON;
* ``delete STORE ID``: delete the session;
* ``delete-expired STORE``: delete the expired sessions and print how many (Redis and
  memcached expire records by themselves: 0);
* ``list STORE USER``: print the user's sessions (as indexed by the middleware's ``user_key``):
  handle, created, last seen, expires, user agent and address, as a table (``--json``: one JSON
  object a line);
* ``revoke STORE USER``: revoke every session of the user (``--keep HANDLE``: all but that one)
  and print how many; ``revoke STORE --handle HANDLE``: revoke one session by its handle;
* ``decode-cookie VALUE [VALUE...]``: verify a signed cookie with the secret in the
  environment variable ``STARLETTE_SESSION_SECRET`` (``--secret-env NAME`` for another; never
  on the command line) and print the session id it holds, or a cookie session's data; the
  values of a split cookie's chunks are given in order;
* ``migrate-043 REDIS_URL``: rewrite starlette-session 0.4.3's pickled Redis records as JSON
  (``--dry-run``, ``--batch N``; see ``starlette_session.legacy``).

The store options (``--table``, ``--key-prefix``, ``--cluster``) may come before or after the
command; a command's own options come after it. Ids are passed to the backends' dict API
(``get``, ``delete``), which forms the store key, so the commands work however keys are made.
Long commands (``delete-expired``, ``migrate-043``) show progress on standard error when it is
a terminal, and nothing when it is not.

A *handle* (``2-`` and 64 hex digits, as ``list`` prints it) names a session's record without
being its id: it can revoke the session but never becomes a cookie. ``list`` and ``revoke`` take
handles only, never a session id, so no credential reaches the command line or the output.

Exit status: 0 done; 1 no such session (or no such session to keep), or a cookie that does not
verify; 2 a usage error, or a store that cannot be opened or failed.

Examples (cron)::

    python -m starlette_session delete-expired sqlite:////var/lib/app/sessions.db
    python -m starlette_session --table app_sessions delete-expired postgresql+psycopg://app@db/app
    python -m starlette_session delete-expired postgresql+psycopg://app@db/app --table app_sessions
    python -m starlette_session delete-expired /var/lib/app/sessions        # a FileBackend directory
    python -m starlette_session get /var/lib/app/sessions SESSION_ID
    python -m starlette_session delete redis://127.0.0.1:6379/0 SESSION_ID --key-prefix app:
    python -m starlette_session get memcache://10.0.0.1:11211,10.0.0.2:11211 SESSION_ID
    python -m starlette_session list redis://127.0.0.1:6379/0 42
    python -m starlette_session revoke redis://127.0.0.1:6379/0 42 --keep 2-9f86d081884c...
    python -m starlette_session revoke /var/lib/app/sessions --handle 2-9f86d081884c...
    STARLETTE_SESSION_SECRET=... python -m starlette_session decode-cookie 'eyJfY3NzaWQi...'
    python -m starlette_session migrate-043 redis://127.0.0.1:6379/0 --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio

from starlette_session.backends.base import DEFAULT_KEY_PREFIX, SessionBackend, backend_error
from starlette_session.exceptions import MissingDependencyError, StarletteSessionError
from starlette_session.ids import is_private_id, is_valid_session_id
from starlette_session.users import SessionInfo

T = TypeVar("T")

#: Exit statuses.
EXIT_OK, EXIT_NOT_FOUND, EXIT_ERROR = 0, 1, 2
#: The environment variable ``decode-cookie`` reads the secret key from, unless told otherwise.
SECRET_ENV = "STARLETTE_SESSION_SECRET"  # noqa: S105 - a variable name, not a secret
#: ``decode-cookie``'s default ``--max-age``: the middleware's default, 14 days.
DEFAULT_MAX_AGE = 14 * 24 * 60 * 60

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_MEMCACHE_SCHEME = "memcache://"
_MEMCACHE_PORT = 11211
# Options that take a value: the word after them is never an id.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VALUE_OPTIONS = ("--table", "--key-prefix", "--secret-env", "--max-age", "--batch", "--keep", "--handle")
#: The most characters of a user agent in ``list``'s table (``--json`` gives it whole).
_SHOWN_USER_AGENT = 40


class UsageError(StarletteSessionError):
    """The command line asks for something that cannot be done (exit status 2)."""


# -- opening a store ---------------------------------------------------------------------------


@dataclass
class Store:
    """A backend opened by the command line, and what closes what the command created."""

    backend: SessionBackend
    #: The store's name in messages: ``"Redis"``, ``"memcached"``, ``"SQL"`` or ``"file"``.
    kind: str
    #: Whether the store expires records by itself (``delete-expired`` has nothing to do).
    self_expiring: bool = False
    redis_client: Any = None

    async def aclose(self) -> None:
        """Close the backend, and the Redis client made for it (the backend never closes one)."""
        try:
            await self.backend.aclose()
        finally:
            if self.redis_client is not None:
                self.redis_client.close()


def store_kind(location: str) -> str:
    """Return which kind of store ``location`` names: ``redis``, ``memcache``, ``sql`` or ``file``."""
    if location.startswith(_REDIS_SCHEMES):
        return "redis"
    if location.startswith(_MEMCACHE_SCHEME):
        return "memcache"
    if "://" in location and not location.startswith("file://"):
        return "sql"
    return "file"


def redis_client(location: str, *, cluster: bool = False) -> Any:
    """Return a sync redis-py client for ``location`` (a ``RedisCluster`` with ``cluster``).

    Raises:
        MissingDependencyError: redis-py is not installed.
        UsageError: the URL cannot be used.
        BackendError: ``cluster`` and the node cannot be reached.
    """
    try:
        import redis  # noqa: PLC0415 - optional dependency
        import redis.cluster  # noqa: PLC0415
        import redis.exceptions  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("redis", "redis") from exc
    try:
        if cluster:  # connects to learn the cluster's nodes
            return redis.cluster.RedisCluster.from_url(location)
        return redis.Redis.from_url(location)
    except ValueError as exc:
        raise UsageError(f"cannot use the Redis URL: {exc}") from None
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise backend_error("Redis", "connect to the cluster", exc) from None


def _memcache_servers(location: str) -> list[str]:
    rest = location.removeprefix(_MEMCACHE_SCHEME).rstrip("/")
    servers: list[str] = []
    for part in rest.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon:
            host, port = part.strip(), str(_MEMCACHE_PORT)
        if not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(
                f"{location!r} is not a memcached location; write memcache://HOST:PORT[,HOST:PORT...]"
            )
        servers.append(f"{host}:{port}")
    return servers


def _sqlite_file(location: str) -> Path | None:
    """Return the file a SQLite URL names (``None`` if it is not a SQLite URL or names none)."""
    try:
        from sqlalchemy.engine import make_url  # noqa: PLC0415
        from sqlalchemy.exc import ArgumentError  # noqa: PLC0415
    except ImportError:
        return None  # from_url names the extra to install
    try:
        url = make_url(location)
    except ArgumentError:
        return None  # from_url reports it
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = str(url.database)
    if database.startswith("file:"):  # a SQLite URI filename (``?uri=true``)
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(database)


def open_store(
    location: str, *, table: str | None = None, key_prefix: str | None = None, cluster: bool = False
) -> Store:
    """Open the store at ``location`` without creating anything: no directory, file or table.

    Args:
        location: a Redis, memcached or SQLAlchemy URL, or a ``FileBackend`` directory.
        table: the SQL table's name (SQL only).
        key_prefix: the key prefix (Redis and memcached only; default ``starlette_session:``).
        cluster: the Redis URL names a node of a Redis Cluster.

    Raises:
        UsageError: an option does not apply to this store, or the location is wrong.
        StarletteSessionError: the store cannot be opened.
    """
    kind = store_kind(location)
    if table is not None and kind != "sql":
        raise UsageError("--table applies to SQL databases only")
    if key_prefix is not None and kind not in ("redis", "memcache"):
        raise UsageError("--key-prefix applies to Redis and memcached only")
    if cluster and kind != "redis":
        raise UsageError("--cluster applies to Redis URLs only")
    prefix = DEFAULT_KEY_PREFIX if key_prefix is None else key_prefix
    if kind == "redis":
        from starlette_session.backends.redis import RedisBackend  # noqa: PLC0415

        client = redis_client(location, cluster=cluster)
        try:
            return Store(RedisBackend(client, key_prefix=prefix), "Redis", True, client)
        except BaseException:
            client.close()
            raise
    if kind == "memcache":
        from starlette_session.backends.memcache import MemcacheBackend  # noqa: PLC0415

        backend = MemcacheBackend.from_servers(_memcache_servers(location), key_prefix=prefix)
        return Store(backend, "memcached", True)
    if kind == "sql":
        sqlite_file = _sqlite_file(location)
        if sqlite_file is not None and not sqlite_file.is_file():
            raise UsageError(f"the SQLite database {str(sqlite_file)!r} does not exist")
        from starlette_session.backends.sqlalchemy import SQLAlchemyBackend  # noqa: PLC0415

        try:
            sql_backend = SQLAlchemyBackend.from_url(location, table_name=table, create_table=False)
        except ImportError as exc:  # the URL's driver (a MissingDependencyError is one too)
            if isinstance(exc, StarletteSessionError):
                raise
            raise UsageError(
                f"the database driver is not installed ({exc}); install it, or name an installed "
                "one in the URL, such as postgresql+psycopg://"
            ) from None
        return Store(sql_backend, "SQL")
    from starlette_session.backends.file import FileBackend  # noqa: PLC0415

    return Store(FileBackend(Path(location.removeprefix("file://")), create=False), "file")


# -- progress on a terminal ----------------------------------------------------------------------


class Progress:
    """One line of progress on ``stream``, rewritten in place; silent unless it is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        """Replace the line with ``text``."""
        if not self.enabled:
            return
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        """Remove the line."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    async def while_running(self, label: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Await ``operation``, showing ``label`` and the seconds elapsed until it returns."""
        if not self.enabled:
            return await operation()
        started = time.monotonic()
        stop = threading.Event()

        def tick() -> None:
            while True:
                self.show(f"{label}... {time.monotonic() - started:.1f} s")
                if stop.wait(0.2):
                    return

        # A thread, not a task: the operation's exception then reaches the caller as it is.
        ticker = threading.Thread(target=tick, name="starlette-session-progress", daemon=True)
        ticker.start()
        try:
            return await operation()
        finally:
            stop.set()
            ticker.join()
            self.clear()


# -- the commands ------------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _checked_handle(text: str, option: str) -> str:
    if not is_private_id(text):
        # Never echoed: a session id (a credential) given where a handle belongs lands here.
        raise UsageError(
            f"{option} takes a session handle: 2- and 64 hex digits, as the list command prints it "
            "(a session id is not a handle)"
        )
    return text


def _check_user_command(args: argparse.Namespace) -> None:
    """Refuse a ``list`` or ``revoke`` command line that cannot be run, before the store is opened."""
    if args.command == "revoke" and args.handle is not None:
        if args.user is not None:
            raise UsageError("revoke takes a USER or --handle, not both")
        if args.keep is not None:
            raise UsageError("--keep applies to revoking a user's sessions, not to --handle")
        _checked_handle(args.handle, "--handle")
        return
    if args.user is None:
        raise UsageError("revoke needs a USER, or --handle HANDLE for one session")
    if not args.user:
        raise UsageError("USER is empty; give the value the app keeps under its user_key")
    if args.command == "revoke" and args.keep is not None:
        _checked_handle(args.keep, "--keep")


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a user agent is the client's to choose."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _moment(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table_row(info: SessionInfo) -> list[str]:
    user_agent = "-" if info.user_agent is None else _printable(info.user_agent)
    if len(user_agent) > _SHOWN_USER_AGENT:
        user_agent = user_agent[: _SHOWN_USER_AGENT - 1] + "…"
    return [
        info.handle,
        _moment(info.created_at),
        _moment(info.last_seen_at),
        _moment(info.expires_at),
        user_agent,
        "-" if info.ip is None else _printable(info.ip),
    ]


def _print_sessions(infos: list[SessionInfo], *, as_json: bool) -> None:
    if as_json:
        for info in infos:
            line = {
                "handle": info.handle,
                "created_at": info.created_at,
                "last_seen_at": info.last_seen_at,
                "expires_at": info.expires_at,
                "user_agent": info.user_agent,
                "ip": info.ip,
            }
            print(json.dumps(line))  # ASCII only: no control character reaches the terminal
        return
    if not infos:
        print("no sessions for this user", file=sys.stderr)
        return
    header = ["HANDLE", "CREATED (UTC)", "LAST SEEN (UTC)", "EXPIRES (UTC)", "USER AGENT", "IP"]
    rows = [header, *(_table_row(info) for info in infos)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def _user_command(backend: SessionBackend, args: argparse.Namespace) -> int:
    if args.command == "list":
        _print_sessions(await backend.list_user_sessions(args.user), as_json=args.json)
        return EXIT_OK
    if args.handle is not None:
        if not await backend.revoke_session(args.handle):
            print("no such session", file=sys.stderr)
            return EXIT_NOT_FOUND
        print("revoked 1 session(s)")
        return EXIT_OK
    if args.keep is not None:
        # A mistyped --keep would otherwise log the user out everywhere, the kept device too.
        handles = {info.handle for info in await backend.list_user_sessions(args.user)}
        if args.keep not in handles:
            print("no such session of this user to keep; nothing was revoked", file=sys.stderr)
            return EXIT_NOT_FOUND
    count = await backend.revoke_user_sessions(args.user, keep=args.keep)
    print(f"revoked {count} session(s)")
    return EXIT_OK


async def _store_command(args: argparse.Namespace) -> int:
    if args.command in ("list", "revoke"):
        _check_user_command(args)
    store = open_store(args.store, table=args.table, key_prefix=args.key_prefix, cluster=args.cluster)
    try:
        backend = store.backend
        if args.command in ("list", "revoke"):
            return await _user_command(backend, args)
        if args.command == "delete-expired":
            if store.self_expiring:
                print(f"{store.kind} expires sessions by itself; nothing to delete", file=sys.stderr)
                count = 0
            else:
                count = await Progress(sys.stderr).while_running(
                    "deleting expired sessions", backend.delete_expired
                )
            print(f"deleted {count} expired session(s)")
            return EXIT_OK
        session_id = args.session_id
        if not is_valid_session_id(session_id):
            _error(f"{session_id!r} is not a session id")
            return EXIT_ERROR
        data = await backend.get(session_id)
        if data is None:
            print("no such session", file=sys.stderr)
            return EXIT_NOT_FOUND
        if args.command == "get":
            _print_json(data)
        else:
            # By its handle first, so that its user's index (user_key) forgets it too; then under
            # every key form (the raw id of an older version).
            await backend.revoke_session(backend.key_for(session_id))
            await backend.delete(session_id)
            print("deleted")
        return EXIT_OK
    finally:
        await store.aclose()


def _decode_cookie(args: argparse.Namespace) -> int:
    from starlette_session.cookies import CHUNK_MARKER  # noqa: PLC0415
    from starlette_session.signing import SignedCodec, normalize_secret_keys  # noqa: PLC0415
    from starlette_session.strategies import SESSION_ID_FIELD  # noqa: PLC0415

    if _ENV_NAME.fullmatch(args.secret_env) is None:
        # Never echoed: it may be the secret itself, typed where its variable's name belongs.
        raise UsageError("--secret-env takes the name of an environment variable, not a value")
    secret = os.environ.get(args.secret_env)
    if not secret:
        raise UsageError(
            f"set the environment variable {args.secret_env} to the app's secret_key "
            "(the secret is never taken from the command line)"
        )
    value = "".join(args.value)
    if len(args.value) == 1 and value.startswith(CHUNK_MARKER):
        raise UsageError(
            f"{value!r} is the marker of a split cookie; pass the values of its chunks "
            "(<name>.1, <name>.2, ...) in order instead"
        )
    payload = SignedCodec(normalize_secret_keys(secret), args.max_age, cache_size=0).decode(value)
    try:
        data = None if payload is None else json.loads(payload)
    except ValueError:
        data = None
    if data is None:
        print(
            "the cookie does not verify: altered, signed with another secret, or older than "
            + ("--max-age" if args.max_age is None else f"{args.max_age} s (--max-age)"),
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    if (
        isinstance(data, dict)
        and list(data) == [SESSION_ID_FIELD]
        and is_valid_session_id(data[SESSION_ID_FIELD])
    ):
        print(data[SESSION_ID_FIELD])
    else:
        _print_json(data)
    return EXIT_OK


def _migrate_043(args: argparse.Namespace) -> int:
    from starlette_session.legacy import Counts, migrate_043_redis  # noqa: PLC0415

    if store_kind(args.store) != "redis":
        raise UsageError("migrate-043 needs a Redis URL (redis://, rediss:// or unix://)")
    if args.table is not None:
        raise UsageError("--table applies to SQL databases only")
    progress = Progress(sys.stderr)

    def report(scanned: int, counts: Counts) -> None:
        progress.show(
            f"scanned {scanned} key(s): {counts.converted} converted, {counts.skipped_unsafe} unsafe, "
            f"{counts.already_migrated} already migrated"
        )

    client = redis_client(args.store, cluster=args.cluster)
    try:
        counts = migrate_043_redis(
            client,
            key_prefix=DEFAULT_KEY_PREFIX if args.key_prefix is None else args.key_prefix,
            batch=args.batch,
            dry_run=args.dry_run,
            progress=report,
        )
    finally:
        progress.clear()
        client.close()
    if args.dry_run:
        print("dry run: nothing was changed; a real run would give:")
    print(f"converted: {counts.converted}")
    print(f"skipped (unsafe): {counts.skipped_unsafe}")
    print(f"already migrated: {counts.already_migrated}")
    print(f"not a session: {counts.not_a_session}")
    return EXIT_OK


# -- the command line ----------------------------------------------------------------------------


def _store_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # On the main parser with real defaults, on each command with SUPPRESS: then an option
    # given before the command is not overwritten by the command's default.
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--table", default=default(None), metavar="NAME", help="SQL: the table, if not starlette_sessions"
    )
    parser.add_argument(
        "--key-prefix",
        default=default(None),
        metavar="PREFIX",
        help=f"Redis and memcached: the key prefix, if not {DEFAULT_KEY_PREFIX!r}",
    )
    parser.add_argument(
        "--cluster", action="store_true", default=default(False), help="Redis: the URL names a cluster node"
    )


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return number


def _max_age(text: str) -> int | None:
    if text.lower() == "none":
        return None
    return _positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    """Return the command line's parser."""
    parser = argparse.ArgumentParser(
        prog="python -m starlette_session",
        description="Maintain session stores (for cron jobs and support work).",
        epilog="Exit status: 0 done, 1 no such session (or none to keep) or the cookie does not "
        "verify, 2 usage or store error.",
        allow_abbrev=False,
    )
    _store_options(parser, suppress=False)
    shared = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _store_options(shared, suppress=True)
    store_help = "a Redis, memcache:// or SQLAlchemy URL, or a FileBackend directory"
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    expired = commands.add_parser(
        "delete-expired",
        parents=[shared],
        help="delete the expired sessions and print how many",
        allow_abbrev=False,
    )
    expired.add_argument("store", help=store_help)
    for name, text in (("get", "print a session's data as JSON"), ("delete", "delete a session")):
        command = commands.add_parser(name, parents=[shared], help=text, allow_abbrev=False)
        command.add_argument("store", help=store_help)
        command.add_argument("session_id", help="the session id (the cookie's _cssid)")

    listing = commands.add_parser(
        "list",
        parents=[shared],
        help="print a user's sessions (handle, created, last seen, expires, user agent, address)",
        allow_abbrev=False,
    )
    listing.add_argument("store", help=store_help)
    listing.add_argument("user", help="the user: the value the app keeps under its user_key")
    listing.add_argument("--json", action="store_true", help="one JSON object a line instead of a table")
    revoke = commands.add_parser(
        "revoke",
        parents=[shared],
        help="revoke a user's sessions (or one, by --handle) and print how many",
        allow_abbrev=False,
    )
    revoke.add_argument("store", help=store_help)
    revoke.add_argument("user", nargs="?", help="the user whose sessions to revoke")
    revoke.add_argument("--keep", metavar="HANDLE", help="revoke all of the user's sessions but this one")
    revoke.add_argument("--handle", metavar="HANDLE", help="revoke this one session instead of a user's")

    decode = commands.add_parser(
        "decode-cookie",
        help=f"verify a signed cookie (secret in ${SECRET_ENV}) and print its session id or data",
        allow_abbrev=False,
    )
    decode.add_argument("value", nargs="+", help="the cookie's value (a split cookie: its chunks, in order)")
    decode.add_argument(
        "--secret-env",
        default=SECRET_ENV,
        metavar="NAME",
        help=f"the environment variable holding the secret key (default {SECRET_ENV})",
    )
    decode.add_argument(
        "--max-age",
        type=_max_age,
        default=DEFAULT_MAX_AGE,
        metavar="SECONDS",
        help=f"the app's max_age, or 'none' (default {DEFAULT_MAX_AGE})",
    )

    migrate = commands.add_parser(
        "migrate-043",
        parents=[shared],
        help="rewrite starlette-session 0.4.3's pickled Redis records as JSON",
        allow_abbrev=False,
    )
    migrate.add_argument("store", metavar="REDIS_URL", help="the Redis database 0.4.3 wrote to")
    migrate.add_argument("--dry-run", action="store_true", help="count what would be done, change nothing")
    migrate.add_argument("--batch", type=_positive_int, default=500, metavar="N", help="keys per round trip")
    return parser


def _protect_dashed_ids(arguments: list[str]) -> list[str]:
    """Keep an id that starts with ``-`` (base64url allows it) from being read as an option.

    A positional one moves after ``--``; the value of an option is joined to it (``--keep=-x``).
    """
    if "--" in arguments:
        return arguments
    kept: list[str] = []
    ids: list[str] = []
    after_option = False
    for argument in arguments:
        if after_option and argument.startswith("-"):
            kept[-1] = f"{kept[-1]}={argument}"  # an option's value: "--handle=-x", never an option
            after_option = False
            continue
        if not after_option and argument.startswith("-") and is_valid_session_id(argument):
            ids.append(argument)
        else:
            kept.append(argument)
        after_option = argument in _VALUE_OPTIONS
    return [*kept, "--", *ids] if ids else kept


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(_protect_dashed_ids(list(sys.argv[1:] if argv is None else argv)))
    try:
        if args.command == "decode-cookie":
            for option in ("table", "key_prefix"):
                if getattr(args, option) is not None:
                    raise UsageError(f"--{option.replace('_', '-')} does not apply to decode-cookie")
            if args.cluster:
                raise UsageError("--cluster does not apply to decode-cookie")
            return _decode_cookie(args)
        if args.command == "migrate-043":
            return _migrate_043(args)
        return anyio.run(_store_command, args)
    except StarletteSessionError as exc:
        _error(str(exc))
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
