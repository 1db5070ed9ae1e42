"""Maintenance commands: ``python -m starlette_session --help``.

Examples (cron)::

    python -m starlette_session delete-expired sqlite:////var/lib/app/sessions.db
    python -m starlette_session delete-expired postgresql+psycopg://app@db/app --table starlette_sessions
    python -m starlette_session delete-expired /var/lib/app/sessions        # a FileBackend directory
    python -m starlette_session get /var/lib/app/sessions SESSION_ID
    python -m starlette_session delete /var/lib/app/sessions SESSION_ID
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from starlette_session.backends.base import SessionBackend
from starlette_session.exceptions import StarletteSessionError
from starlette_session.ids import is_valid_session_id

_SELF_EXPIRING = ("redis://", "rediss://", "unix://", "memcache://")


def open_store(location: str, table: str | None = None) -> SessionBackend:
    """Return the backend for ``location``: a SQLAlchemy URL, or a ``FileBackend`` directory.

    Raises:
        StarletteSessionError: the location names a store that expires records by itself, or
            cannot be opened.
    """
    if location.startswith(_SELF_EXPIRING):
        raise StarletteSessionError(
            f"{location.split(':', 1)[0]} expires sessions by itself; there is nothing to maintain. "
            "Use the backend object in Python to read or delete a session by id."
        )
    if "://" in location and not location.startswith("file://"):
        from starlette_session.backends.sqlalchemy import SQLAlchemyBackend  # noqa: PLC0415

        return SQLAlchemyBackend.from_url(location, table_name=table, create_table=False)
    from starlette_session.backends.file import FileBackend  # noqa: PLC0415

    return FileBackend(Path(location.removeprefix("file://")), create=False)


async def _run(args: argparse.Namespace) -> int:
    store = open_store(args.store, args.table)
    try:
        if args.command == "delete-expired":
            count = await store.delete_expired()
            print(f"deleted {count} expired session(s)")
            return 0
        if not is_valid_session_id(args.session_id):
            print(f"error: {args.session_id!r} is not a session id", file=sys.stderr)
            return 2
        if args.command == "get":
            data = await store.get(args.session_id)
            if data is None:
                print("no such session", file=sys.stderr)
                return 1
            print(json.dumps(data, indent=2, ensure_ascii=False))
            return 0
        await store.delete(args.session_id)
        print("deleted")
        return 0
    finally:
        await store.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m starlette_session",
        description="Maintain server-side session stores (for cron jobs and support work).",
    )
    parser.add_argument(
        "--table", default=None, help="the SQL table name, if not the default starlette_sessions"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    expired = commands.add_parser("delete-expired", help="delete the expired sessions and print how many")
    expired.add_argument("store", help="a SQLAlchemy database URL, or a FileBackend directory")
    for name, text in (("get", "print a session's data as JSON"), ("delete", "delete a session")):
        command = commands.add_parser(name, help=text)
        command.add_argument("store", help="a SQLAlchemy database URL, or a FileBackend directory")
        command.add_argument("session_id", help="the session id (the cookie's _cssid)")
    arguments = list(sys.argv[1:] if argv is None else argv)
    # An id may start with "-" (base64url); argparse would take it for an option.
    if arguments and arguments[-1].startswith("-") and is_valid_session_id(arguments[-1]):
        arguments.insert(len(arguments) - 1, "--")
    args = parser.parse_args(arguments)
    try:
        return anyio.run(_run, args)
    except StarletteSessionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
