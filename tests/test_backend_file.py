"""FileBackend: layout, expiry, delete_expired, id validation, atomicity, processes, errors."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from starlette_session.backends import BackendType, backend_for_client, create_backend
from starlette_session.backends.file import HEADER_MAGIC, FileBackend
from starlette_session.exceptions import BackendError, ConfigurationError, StarletteSessionError
from tests.helpers import T0, FakeClock

pytestmark = pytest.mark.anyio

SID = "abcdefghijklmnop0123456789_-ABCD"
OTHER = "zyxwvutsrqponmlk9876543210-_ZYXW"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def backend(session_dir: Path, clock: FakeClock) -> FileBackend:
    return FileBackend(session_dir, clock=clock)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with a file's content (``None`` for a directory)."""
    return {
        str(path.relative_to(root)): (path.read_bytes() if path.is_file() else None)
        for path in sorted(root.rglob("*"))
    }


LOCK_FILE = ".session-lock"


def listing(directory: Path) -> list[str]:
    """The directory's entries, without the backend's lock file."""
    return sorted(name for name in os.listdir(directory) if name != LOCK_FILE)


def temp_files(directory: Path) -> list[str]:
    return [name for name in listing(directory) if name.startswith(".")]


def header(expires: float) -> bytes:
    return HEADER_MAGIC + b"%.3f\n" % expires


# -- round trip and layout ----------------------------------------------------------------------


async def test_round_trip(backend: FileBackend) -> None:
    assert await backend.read(SID) is None
    await backend.write(SID, b'{"n": 1}', 60)
    assert await backend.read(SID) == b'{"n": 1}'
    await backend.write(SID, b"", 60)
    assert await backend.read(SID) == b""
    await backend.write(SID, bytes(range(256)) * 100, 60)
    assert await backend.read(SID) == bytes(range(256)) * 100
    assert await backend.read(OTHER) is None
    await backend.remove(SID)
    assert await backend.read(SID) is None
    await backend.remove(SID)  # missing: not an error


async def test_file_layout_header_and_mode(backend: FileBackend, session_dir: Path) -> None:
    await backend.write(SID, b"data", 10)
    path = session_dir / f"session-{SID}"
    assert listing(session_dir) == [path.name]
    assert path.read_bytes() == b"starlette-session/1 1700000010.000\ndata"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_custom_file_mode_and_prefix(session_dir: Path, clock: FakeClock) -> None:
    backend = FileBackend(session_dir, file_prefix="app.sess_", file_mode=0o640, clock=clock)
    await backend.write(SID, b"x", 10)
    path = session_dir / f"app.sess_{SID}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert await backend.read(SID) == b"x"


async def test_fsync_option_round_trip(session_dir: Path) -> None:
    backend = FileBackend(session_dir, fsync=True)
    await backend.write(SID, b"durable", 60)
    assert await backend.read(SID) == b"durable"
    assert await backend.touch(SID, 120)
    assert await backend.read(SID) == b"durable"


async def test_dict_api_of_0_4_3(backend: FileBackend, session_dir: Path) -> None:
    await backend.set(SID, {"user": "ada", "n": [1, 2]}, 30)
    assert await backend.get(SID) == {"user": "ada", "n": [1, 2]}
    await backend.set(OTHER, {"a": 1}, None)
    content = (session_dir / f"session-{backend.key_for(OTHER)}").read_bytes()
    assert content.startswith(header(T0 + backend.default_ttl))
    await backend.delete(SID)
    assert await backend.get(SID) is None
    assert await backend.get("../etc/passwd") is None


# -- construction -------------------------------------------------------------------------------


def test_creates_directory_with_mode_0700(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "sessions"
    backend = FileBackend(directory)
    assert directory.is_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert backend.directory == directory


def test_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    FileBackend(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750


def test_missing_directory_without_create(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"does not exist.*mkdir -m 700.*create=True"):
        FileBackend(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="not a directory"):
        FileBackend(tmp_path / "file")


def test_directory_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="cannot create directory") as info:
        FileBackend(tmp_path / "file" / "sessions")
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("prefix", ["", ".hidden", "a/b", "a\\b", "x" * 65, "a\x00", "é"])
def test_bad_file_prefix(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="file_prefix"):
        FileBackend(tmp_path, file_prefix=prefix)


@pytest.mark.parametrize("mode", [0o400, 0o200, 0o1600, -1, True])
def test_bad_file_mode(tmp_path: Path, mode: int) -> None:
    with pytest.raises(ConfigurationError, match="file_mode"):
        FileBackend(tmp_path, file_mode=mode)


# -- registry -------------------------------------------------------------------------------------


def test_create_backend_from_str_and_path(tmp_path: Path) -> None:
    from_str = create_backend(BackendType.file, str(tmp_path / "s1"))
    assert isinstance(from_str, FileBackend)
    assert from_str.directory == tmp_path / "s1"
    from_path = create_backend("file", tmp_path / "s2")
    assert isinstance(from_path, FileBackend)
    assert (tmp_path / "s2").is_dir()


@pytest.mark.parametrize("client", [None, 123, b"/tmp/x", "", object()])
def test_from_client_rejects_non_paths(client: object) -> None:
    with pytest.raises(ConfigurationError, match=r"BackendType\.file"):
        FileBackend.from_client(client)


def test_accepts_only_pathlib_paths(tmp_path: Path) -> None:
    assert FileBackend.accepts(tmp_path)
    assert not FileBackend.accepts(str(tmp_path))
    assert not FileBackend.accepts(None)


def test_auto_detected_from_a_path(tmp_path: Path) -> None:
    backend = backend_for_client(tmp_path / "auto")
    assert isinstance(backend, FileBackend)
    assert backend.directory == tmp_path / "auto"


# -- expiry ----------------------------------------------------------------------------------------


async def test_expired_file_reads_as_missing_and_a_read_never_deletes(
    backend: FileBackend, clock: FakeClock, session_dir: Path
) -> None:
    await backend.write(SID, b"data", 10)
    clock.now = T0 + 9.999
    assert await backend.read(SID) == b"data"
    clock.now = T0 + 10
    assert await backend.read(SID) is None
    assert listing(session_dir) == [f"session-{SID}"]  # a read never writes
    assert await backend.replace(SID, b"late", 10) is False  # an expired record is not revived
    assert await backend.delete_expired() == 1
    assert listing(session_dir) == []


async def test_touch_extends_expiry(backend: FileBackend, clock: FakeClock, session_dir: Path) -> None:
    await backend.write(SID, b"data", 10)
    inode = (session_dir / f"session-{SID}").stat().st_ino
    clock.now = T0 + 5
    assert await backend.touch(SID, 10) is True
    path = session_dir / f"session-{SID}"
    assert path.read_bytes() == header(T0 + 15) + b"data"
    assert path.stat().st_ino != inode  # rewritten by rename, never in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    clock.now = T0 + 14
    assert await backend.read(SID) == b"data"
    assert temp_files(session_dir) == []


async def test_touch_missing_expired_or_invalid(
    backend: FileBackend, clock: FakeClock, session_dir: Path
) -> None:
    assert await backend.touch(SID, 10) is False
    await backend.write(SID, b"data", 10)
    clock.now = T0 + 10
    assert await backend.touch(SID, 10) is False
    assert (session_dir / f"session-{SID}").read_bytes() == header(T0 + 10) + b"data"  # not renewed
    assert await backend.touch("../x", 10) is False


def hold_lock(session_dir: Path) -> int:
    """Take the backend's lock as another process would; return the descriptor to close."""
    fd = os.open(session_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@pytest.mark.parametrize("operation", ["replace", "touch", "compare_and_swap"])
async def test_a_change_waiting_on_the_lock_never_undoes_a_removal(
    backend: FileBackend, session_dir: Path, operation: str
) -> None:
    await backend.write(SID, b"old", 10)
    fd = hold_lock(session_dir)  # another worker is mid-change: it will remove the session
    results: list[bool] = []

    async def change() -> None:
        if operation == "replace":
            results.append(await backend.replace(SID, b"late", 10))
        elif operation == "touch":
            results.append(await backend.touch(SID, 10))
        else:
            results.append(await backend.compare_and_swap(SID, b"old", b"late", 10))

    async with anyio.create_task_group() as group:
        group.start_soon(change)
        await anyio.wait_all_tasks_blocked()  # the change is in its thread, waiting on flock
        (session_dir / f"session-{SID}").unlink()  # the other worker's logout
        os.close(fd)
    assert results == [False]
    assert listing(session_dir) == []


async def test_create_never_overwrites_a_live_record(backend: FileBackend, clock: FakeClock) -> None:
    assert await backend.create(SID, b"first", 10) is True
    assert await backend.create(SID, b"second", 10) is False
    assert await backend.read(SID) == b"first"
    clock.now = T0 + 10  # expired: may be taken again
    assert await backend.create(SID, b"third", 10) is True
    assert await backend.read(SID) == b"third"


# -- delete_expired ----------------------------------------------------------------------------------


async def test_delete_expired_counts_only_expired_session_files(
    backend: FileBackend, clock: FakeClock, session_dir: Path
) -> None:
    expired_ids = [f"expired{i}".ljust(20, "x") for i in range(3)]
    live_ids = [f"live{i}".ljust(20, "x") for i in range(2)]
    for sid in expired_ids:
        await backend.write(sid, b"e", 5)
    for sid in live_ids:
        await backend.write(sid, b"l", 50)
    stale = header(T0 - 100) + b"stale"
    untouched = {
        ".session-abc123.tmp": stale,  # another process's write in progress
        "notes.txt": b"not a session",
        "session-short": stale,  # prefix, but not a valid id
        "other-" + SID: stale,  # another prefix
        "session-" + SID + ".bak": stale,
    }
    for name, content in untouched.items():
        (session_dir / name).write_bytes(content)
    (session_dir / f"session-{OTHER}").mkdir()  # not a regular file
    (session_dir / "session-linklinklinklinklink").symlink_to(session_dir / "notes.txt")

    clock.now = T0 + 10
    assert await backend.delete_expired() == 3
    remaining = set(listing(session_dir))
    assert remaining == {
        *(f"session-{sid}" for sid in live_ids),
        *untouched,
        f"session-{OTHER}",
        "session-linklinklinklinklink",
    }
    for name, content in untouched.items():
        assert (session_dir / name).read_bytes() == content
    assert await backend.delete_expired() == 0
    for sid in live_ids:
        assert await backend.read(sid) == b"l"


async def test_delete_expired_removes_corrupt_session_files(backend: FileBackend, session_dir: Path) -> None:
    (session_dir / f"session-{SID}").write_bytes(b"garbage")
    await backend.write(OTHER, b"ok", 10)
    assert await backend.delete_expired() == 1
    assert listing(session_dir) == [f"session-{OTHER}"]


async def test_delete_expired_tolerates_files_deleted_meanwhile(session_dir: Path, clock: FakeClock) -> None:
    class Racing(FileBackend):
        """Another process deletes each file just after this one lists it."""

        def _session_id_of(self, name: str) -> str | None:
            session_id = super()._session_id_of(name)
            if session_id is not None:
                (self.directory / name).unlink()
            return session_id

    backend = Racing(session_dir, clock=clock)
    for i in range(3):
        await backend.write(f"gone{i}".ljust(20, "x"), b"x", 1)
    clock.now = T0 + 5
    assert await backend.delete_expired() == 0
    assert listing(session_dir) == []


async def test_delete_expired_spares_a_file_rewritten_meanwhile(
    backend: FileBackend, clock: FakeClock, session_dir: Path
) -> None:
    await backend.write(SID, b"old", 1)
    clock.now = T0 + 5
    fresh = FileBackend(session_dir, clock=lambda: T0 + 5)
    fd = hold_lock(session_dir)  # another worker is about to renew the session
    counted: list[int] = []

    async def sweep() -> None:
        counted.append(await backend.delete_expired())

    async with anyio.create_task_group() as group:
        group.start_soon(sweep)
        await anyio.wait_all_tasks_blocked()  # the sweep read the stale header, waits on the lock
        path = session_dir / f"session-{SID}"
        path.write_bytes(header(T0 + 65) + b"fresh")  # the renewal, under the other worker's lock
        os.close(fd)
    assert counted == [0]
    assert await fresh.read(SID) == b"fresh"


# -- ids never become paths outside the directory ------------------------------------------------------

BAD_IDS: list[Any] = [
    "../x",
    "../../victim-file-xxxxxxxxx",
    "../victim",
    "/etc/passwd",
    "/tmp/" + "a" * 20,
    "a\x00" * 10,
    "x" * 129,
    "x" * 5000,
    "",
    ".",
    "..",
    "a/b/c/d/e/f/g/h/i/j",
    "..\\..\\windows-12345678",
    "session id with spaces",
    "é" * 20,
    "abcdefghijklmnop\n",
    123,
    None,
    b"abcdefghijklmnopqrst",
]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
async def test_invalid_ids_never_touch_the_filesystem(tmp_path: Path, bad_id: Any) -> None:
    (tmp_path / "victim").write_bytes(b"precious")
    (tmp_path / "victim-file-xxxxxxxxx").write_bytes(b"precious")
    backend = FileBackend(tmp_path / "sessions", file_prefix="p")
    (tmp_path / "sessions" / "p..").mkdir()  # so "p" + "../victim" would resolve inside
    before = tree(tmp_path)

    assert await backend.read(bad_id) is None
    assert await backend.get(bad_id) is None
    assert await backend.touch(bad_id, 10) is False
    with pytest.raises(ConfigurationError, match="invalid session id"):
        await backend.write(bad_id, b"evil", 10)
    with pytest.raises(ValueError, match="new_session_id"):
        await backend.set(bad_id, {"evil": True}, 10)
    with pytest.raises(StarletteSessionError):
        await backend.remove(bad_id)
    with pytest.raises(ConfigurationError):
        await backend.delete(bad_id)

    assert tree(tmp_path) == before


# -- atomicity and concurrency ----------------------------------------------------------------------------


async def test_reader_never_sees_a_partial_write(session_dir: Path) -> None:
    backend = FileBackend(session_dir)
    big, small = b"a" * (1 << 20), b"b" * 7
    await backend.write(SID, small, 60)
    seen: list[bytes | None] = []
    done = anyio.Event()

    async def writer() -> None:
        for i in range(100):
            await backend.write(SID, big if i % 2 == 0 else small, 60)
        done.set()

    async def reader() -> None:
        # Bounded: stops when the writer is done or after 5000 reads.
        for _ in range(5000):
            seen.append(await backend.read(SID))
            if done.is_set():
                return

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        group.start_soon(reader)
        group.start_soon(writer)

    assert seen
    bad = [len(data) if data is not None else None for data in seen if data not in (big, small)]
    assert bad == []
    assert temp_files(session_dir) == []


def _process_worker(directory: str, worker: int, iterations: int) -> list[str]:
    """Run in a spawned process: write/read its own id and a shared one; return the errors."""

    async def main() -> list[str]:
        backend = FileBackend(directory)
        errors: list[str] = []
        own = f"worker{worker}".ljust(20, "w")
        for i in range(iterations):
            own_data = b"%d:%d" % (worker, i)
            await backend.write(own, own_data, 60)
            got = await backend.read(own)
            if got != own_data:
                errors.append(f"own id: wrote {own_data!r}, read {got!r}")
            shared_data = bytes([65 + worker]) * (1000 * (i % 5 + 1))
            await backend.write(SID, shared_data, 60)
            shared = await backend.read(SID)
            if shared is None:
                errors.append("shared id read as missing")
            elif len(set(shared)) != 1 or len(shared) % 1000 != 0:
                errors.append(f"shared id: partial or mixed record of {len(shared)} bytes")
            if not await backend.touch(SID, 60):
                errors.append("touch found no shared record")
            if i % 10 == 0 and await backend.delete_expired() != 0:
                errors.append("delete_expired removed a live record")
        return errors

    return anyio.run(main)


def test_several_processes_share_the_directory(session_dir: Path) -> None:
    FileBackend(session_dir)
    workers, iterations = 4, 60
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_process_worker, str(session_dir), n, iterations) for n in range(workers)]
        errors = [error for future in futures for error in future.result(timeout=120)]
    assert errors == []

    async def check() -> None:
        backend = FileBackend(session_dir)
        for n in range(workers):
            assert await backend.read(f"worker{n}".ljust(20, "w")) == b"%d:%d" % (n, iterations - 1)
        shared = await backend.read(SID)
        assert shared is not None
        assert len(set(shared)) == 1
        assert len(shared) % 1000 == 0

    anyio.run(check)
    assert temp_files(session_dir) == []
    assert len(listing(session_dir)) == workers + 1


# -- corrupt files and OS errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage",
        b"garbage\nmore",
        HEADER_MAGIC + b"nan\ndata",
        HEADER_MAGIC + b"inf\ndata",
        HEADER_MAGIC + b"abc\ndata",
        HEADER_MAGIC + b"\xff\xfe\ndata",
        HEADER_MAGIC + b"1" * 100 + b"\ndata",  # header past HEADER_MAX
        HEADER_MAGIC + b"99999999999",  # no end of header
        b"starlette-session/2 99999999999\ndata",
    ],
)
async def test_corrupt_file_reads_as_missing_and_is_swept(
    backend: FileBackend, session_dir: Path, content: bytes
) -> None:
    path = session_dir / f"session-{SID}"
    path.write_bytes(content)
    assert await backend.read(SID) is None
    assert await backend.touch(SID, 10) is False
    assert await backend.replace(SID, b"x", 10) is False
    assert path.read_bytes() == content  # neither a read nor a failed change writes
    assert await backend.delete_expired() == 1
    assert not path.exists()


async def test_os_errors_become_backend_errors(backend: FileBackend, session_dir: Path) -> None:
    # A directory where the session file should be: every operation on it fails with an
    # OSError (chmod would not do: tests may run as root, which ignores permissions).
    path = session_dir / f"session-{SID}"
    path.mkdir()
    (path / "inside").write_bytes(b"x")
    errors = []
    with pytest.raises(BackendError, match="failed to read a session: IsADirectoryError") as info:
        await backend.read(SID)
    errors.append(info.value)
    with pytest.raises(BackendError, match="failed to write a session: IsADirectoryError") as info:
        await backend.write(SID, b"data", 10)
    errors.append(info.value)
    with pytest.raises(BackendError, match="failed to delete a session") as info:
        await backend.remove(SID)
    errors.append(info.value)
    with pytest.raises(BackendError, match="failed to renew a session") as info:
        await backend.touch(SID, 10)
    errors.append(info.value)
    for error in errors:  # the path holds the session id: neither the text nor a cause shows it
        assert SID not in str(error)
        assert error.__cause__ is None
        assert error.__suppress_context__
    assert await backend.delete_expired() == 0
    assert (path / "inside").read_bytes() == b"x"
    assert temp_files(session_dir) == []


async def test_unwritable_directory_raises_backend_error(backend: FileBackend, session_dir: Path) -> None:
    await backend.write(OTHER, b"x", 10)
    session_dir.chmod(0o500)
    try:
        probe = session_dir / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            # Root ignores the mode: make the directory vanish instead.
            probe.unlink()
            session_dir.chmod(0o700)
            (session_dir / f"session-{OTHER}").unlink()
            (session_dir / LOCK_FILE).unlink()
            session_dir.rmdir()
        with pytest.raises(BackendError, match="failed to write a session") as info:
            await backend.write(SID, b"data", 10)
        assert SID not in str(info.value)
    finally:
        if session_dir.exists():
            session_dir.chmod(0o700)


async def test_missing_directory_after_start(backend: FileBackend, session_dir: Path) -> None:
    session_dir.rmdir()
    assert await backend.read(SID) is None
    with pytest.raises(BackendError, match="failed to delete a session: FileNotFoundError"):
        await backend.remove(SID)  # the lock file cannot be made: the store is broken, not empty
    with pytest.raises(BackendError, match="failed to delete expired sessions"):
        await backend.delete_expired()
