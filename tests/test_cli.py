"""``python -m starlette_session``: delete-expired, get and delete on file and SQLite stores.

Sessions are created through the backend API with a clock set in the past, so some are
already expired when the command (which uses the real clock) runs; no sleeping.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from starlette_session.__main__ import main
from starlette_session.backends.file import FileBackend
from starlette_session.backends.sqlalchemy import SQLAlchemyBackend
from starlette_session.ids import new_session_id
from starlette_session.interfaces import SessionBackend

REPO = Path(__file__).resolve().parent.parent
HOUR = 60 * 60


def _past() -> float:
    return time.time() - 10 * HOUR


async def _fill(expired: SessionBackend, live: SessionBackend) -> tuple[list[str], list[str]]:
    """Write 3 sessions through ``expired`` (long expired) and 2 through ``live`` (an hour left)."""
    dead_ids = [new_session_id() for _ in range(3)]
    live_ids = [new_session_id() for _ in range(2)]
    for number, session_id in enumerate(dead_ids):
        await expired.set(session_id, {"n": number}, HOUR)
    for number, session_id in enumerate(live_ids):
        await live.set(session_id, {"n": number, "user": "zoë"}, HOUR)
    await expired.aclose()
    await live.aclose()
    return dead_ids, live_ids


def fill_directory(directory: Path) -> tuple[list[str], list[str]]:
    return anyio.run(_fill, FileBackend(directory, clock=_past), FileBackend(directory))


def fill_database(url: str, table: str | None = None) -> tuple[list[str], list[str]]:
    return anyio.run(
        _fill,
        SQLAlchemyBackend.from_url(url, table_name=table, clock=_past),
        SQLAlchemyBackend.from_url(url, table_name=table),
    )


def stored(location: str, session_id: str, table: str | None = None) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        backend: SessionBackend
        if "://" in location:
            backend = SQLAlchemyBackend.from_url(location, table_name=table)
        else:
            backend = FileBackend(location, create=False)
        try:
            # Through read(): get() would hide the difference between expired and missing.
            data = await backend.read(session_id)
        finally:
            await backend.aclose()
        return None if data is None else json.loads(data)

    return anyio.run(read)


@pytest.fixture(params=["file", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, list[str], list[str]]:
    """A store location holding 3 expired and 2 live sessions, and their ids."""
    if request.param == "file":
        directory = tmp_path / "sessions"
        return (str(directory), *fill_directory(directory))
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    return (url, *fill_database(url))


def test_help_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "starlette_session", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("delete-expired", "get", "delete"):
        assert command in done.stdout


def test_delete_expired(store: tuple[str, list[str], list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    location, _, live_ids = store
    assert main(["delete-expired", location]) == 0
    assert capsys.readouterr().out.strip() == "deleted 3 expired session(s)"
    for session_id in live_ids:
        assert stored(location, session_id) is not None
    # Nothing is left to delete.
    assert main(["delete-expired", location]) == 0
    assert capsys.readouterr().out.strip() == "deleted 0 expired session(s)"


def test_delete_expired_leaves_files_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "sessions"
    _, live_ids = fill_directory(directory)
    (directory / "notes.txt").write_text("not a session")
    assert main(["delete-expired", str(directory)]) == 0
    assert "deleted 3" in capsys.readouterr().out
    names = sorted(path.name for path in directory.iterdir() if path.name != ".session-lock")
    assert names == sorted(["notes.txt", *(f"session-{session_id}" for session_id in live_ids)])


def test_delete_expired_with_table_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    _, live_ids = fill_database(url, table="my_sessions")
    assert main(["--table", "my_sessions", "delete-expired", url]) == 0
    assert capsys.readouterr().out.strip() == "deleted 3 expired session(s)"
    assert stored(url, live_ids[0], table="my_sessions") is not None


def test_get_prints_the_session(
    store: tuple[str, list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    location, dead_ids, live_ids = store
    assert main(["get", location, live_ids[1]]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == {"n": 1, "user": "zoë"}
    assert "zoë" in out  # printed as text, not \u escapes

    # Expired and unknown sessions are "no such session", exit 1.
    for session_id in (dead_ids[0], new_session_id()):
        assert main(["get", location, session_id]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "no such session" in captured.err


def test_delete_removes_one_session(
    store: tuple[str, list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    location, _, live_ids = store
    assert main(["delete", location, live_ids[0]]) == 0
    assert capsys.readouterr().out.strip() == "deleted"
    assert stored(location, live_ids[0]) is None
    assert stored(location, live_ids[1]) is not None
    # Deleting a missing session is not an error.
    assert main(["delete", location, live_ids[0]]) == 0
    assert main(["get", location, live_ids[0]]) == 1


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


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/1"])
def test_redis_expires_by_itself(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["delete-expired", url]) == 2
    err = capsys.readouterr().err
    assert "expires sessions by itself" in err
    assert err.startswith("error: redis")


def test_missing_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["delete-expired", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()  # the command never creates a store


def test_missing_table_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["delete-expired", url]) == 2
    assert "error:" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["vacuum", "/tmp"])
    assert exc_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_an_id_starting_with_a_dash_is_not_taken_for_an_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "sessions"
    store.mkdir()
    assert main(["get", str(store), "-starts-with-a-dash-0123456789"]) == 1
    assert "no such session" in capsys.readouterr().err
