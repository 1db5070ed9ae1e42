"""File backend: one file per session in a directory, shared by every worker process.

Blocking file I/O is bridged to a worker thread (``SessionBackend.call``), one thread hop per
operation. Each file holds a one-line header with the expiry (a Unix timestamp), then the
session bytes. Writes go to a temporary file in the same directory, then ``os.replace`` it
over the session file, so a reader in any process sees the old record or the new one, never
a part of either. Every change (create, replace, compare-and-swap, touch, remove) checks the
current file and renames under one ``flock`` on the directory's lock file
(``.<file_prefix>lock``), so a removal in any worker process is never undone by a request that
was in flight. Reads take no lock and never write. See ``docs/backends/file.md``.

Ids are validated before they become a file name, so no id can name a path outside the
directory: an invalid id reads as missing, and writing or removing one raises
``ConfigurationError`` (the middleware never produces such ids; a caller who does has a bug).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette_session.backends.base import SessionBackend
from starlette_session.exceptions import ConfigurationError
from starlette_session.expiry import expires_at
from starlette_session.ids import is_valid_session_id

#: The first line of every session file: this magic, the expiry timestamp, then ``\n``.
HEADER_MAGIC = b"starlette-session/1 "
#: A header longer than this is corrupt; it bounds what ``delete_expired`` reads per file.
HEADER_MAX = 64

# Never starts with "." (temporary files do) and never holds a path separator.
_VALID_PREFIX = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_TEMP_SUFFIX = ".tmp"


class FileBackend(SessionBackend):
    """Sessions as files in one directory, written atomically, expiry in a header line.

    Expired files read as missing and are removed by ``delete_expired`` (run it from cron:
    ``python -m starlette_session delete-expired``). Blocking I/O runs in a worker thread.

    Args:
        directory: where the session files live. Use a directory only the app's user can
            read: anyone who can read it can read every session.
        file_prefix: the start of every session file name; files without it are never
            touched. Letters, digits, ``_``, ``-`` and ``.``, not starting with ``.``.
        create: create ``directory`` (mode 0o700) if it does not exist.
        file_mode: permission bits of session files; must let the owner read and write.
        fsync: flush each file (and the directory entry) to disk before a write returns.
            Off by default: the rename is atomic either way; ``fsync`` only adds
            durability across a power loss, at a few milliseconds per write.
        clock: returns the current Unix time; tests pass a fake one.

    Raises:
        ConfigurationError: a bad argument, or ``directory`` is missing and ``create`` is
            false, is not a directory, or cannot be created.
    """

    name = "file"
    blocking = True
    store_errors = (OSError,)

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        file_prefix: str = "session-",
        create: bool = True,
        file_mode: int = 0o600,
        fsync: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(file_prefix, str) or _VALID_PREFIX.fullmatch(file_prefix) is None:
            raise ConfigurationError(
                f"FileBackend(file_prefix={file_prefix!r}) must be 1 to 64 letters, digits, '_', '-' "
                "or '.', not starting with '.'"
            )
        if (
            not isinstance(file_mode, int)
            or isinstance(file_mode, bool)
            or not 0 <= file_mode <= 0o777
            or file_mode & 0o600 != 0o600
        ):
            raise ConfigurationError(
                f"FileBackend(file_mode={file_mode!r}) must be permission bits (0o000 to 0o777) that "
                "let the owner read and write, such as 0o600"
            )
        self.directory = Path(os.fspath(directory)).absolute()
        self.file_prefix = file_prefix
        self.file_mode = file_mode
        self.fsync = fsync
        self._clock = clock
        self._temp_prefix = "." + file_prefix
        self._lock_path = self.directory / f".{file_prefix}lock"
        self._prefix_path = os.path.join(self.directory, file_prefix)
        self._prepare_directory(create)

    def _prepare_directory(self, create: bool) -> None:
        path = self.directory
        if path.is_dir():
            return
        if path.exists():
            raise ConfigurationError(
                f"FileBackend directory {str(path)!r} exists but is not a directory; "
                "pass the path of a directory"
            )
        if not create:
            raise ConfigurationError(
                f"FileBackend directory {str(path)!r} does not exist; create it "
                f"(mkdir -m 700 {str(path)!r}) or pass create=True"
            )
        try:
            # Only the leaf gets 0o700; parents are created with the default mode.
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"FileBackend cannot create directory {str(path)!r}: {exc}; create it yourself, "
                "writable by the app's user"
            ) from exc

    @classmethod
    def accepts(cls, client: object) -> bool:
        """Return whether ``client`` is a ``pathlib.Path``.

        A plain ``str`` is not auto-detected: it could as well be a Redis URL or a
        database DSN. Pass ``backend_type=BackendType.file`` with a ``str``.
        """
        return isinstance(client, Path)

    @classmethod
    def from_client(cls, client: Any) -> FileBackend:
        """Build the backend from a directory given as a ``str`` or path-like object.

        Raises:
            ConfigurationError: ``client`` is not a directory path.
        """
        if isinstance(client, str | os.PathLike) and not isinstance(client, bytes):
            path = os.fspath(client)
            if isinstance(path, str) and path:
                return cls(path)
        raise ConfigurationError(
            "BackendType.file takes the sessions directory as backend_client, a str or "
            f"pathlib.Path, not {type(client).__qualname__}"
        )

    # -- the byte API ----------------------------------------------------------------------

    async def read(self, session_id: str) -> bytes | None:
        """Return the session's bytes, or ``None`` if missing, expired, corrupt or the id invalid.

        Never writes: expired files are left for ``delete_expired``.

        Raises:
            BackendError: the file exists but cannot be read.
        """
        if not is_valid_session_id(session_id):
            return None
        # A str path, not a Path: joining Paths costs more Python than the rest of a read here.
        path = self._prefix_path + session_id
        data: bytes | None = await self.call("read a session", self._live, path, redact=(path,))
        return data

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        """Atomically replace the session's file with ``data`` expiring in ``ttl`` seconds.

        Raises:
            ConfigurationError: ``session_id`` is not a valid session id.
            BackendError: the file cannot be written.
        """
        await self._run(
            "write a session", self._locked_store, self._checked_path(session_id), data, ttl, None
        )

    async def create(self, session_id: str, data: bytes, ttl: int) -> bool:
        return bool(
            await self._run(
                "create a session", self._locked_store, self._checked_path(session_id), data, ttl, False
            )
        )

    async def replace(self, session_id: str, data: bytes, ttl: int) -> bool:
        return bool(
            await self._run(
                "replace a session", self._locked_store, self._checked_path(session_id), data, ttl, True
            )
        )

    async def compare_and_swap(self, session_id: str, version: Any, data: bytes, ttl: int) -> bool:
        path = self._checked_path(session_id)
        return bool(await self._run("update a session", self._locked_swap, path, version, data, ttl))

    async def remove(self, session_id: str) -> None:
        """Delete the session's file; a missing file is not an error.

        Raises:
            ConfigurationError: ``session_id`` is not a valid session id.
            BackendError: the file exists but cannot be deleted.
        """
        await self._run("delete a session", self._locked_remove, self._checked_path(session_id))

    async def touch(self, session_id: str, ttl: int) -> bool:
        """Rewrite the session's expiry; return whether a live session existed.

        Raises:
            BackendError: the file cannot be read or written.
        """
        if not is_valid_session_id(session_id):
            return False
        return bool(await self._run("renew a session", self._locked_touch, self._path(session_id), ttl))

    async def delete_expired(self) -> int:
        """Delete expired (and corrupt) session files; return how many this call deleted.

        Temporary files, files without ``file_prefix`` and anything that is not a regular
        file are left alone. A file another process deletes first is not counted.

        Raises:
            BackendError: the directory cannot be listed or a file cannot be deleted.
        """
        result: int = await self._run("delete expired sessions", self._delete_expired_sync)
        return result

    async def _run(self, operation: str, func: Callable[..., Any], *args: Any) -> Any:
        paths = [str(arg) for arg in args if isinstance(arg, Path)]
        return await self.call(operation, func, *args, redact=paths)

    # -- paths -----------------------------------------------------------------------------

    def _path(self, session_id: str) -> Path:
        # Only called with a validated id: base64url characters cannot leave the directory.
        return self.directory / (self.file_prefix + session_id)

    def _checked_path(self, session_id: str) -> Path:
        if not is_valid_session_id(session_id):
            raise ConfigurationError(
                "invalid session id: ids are 16 to 128 characters of A-Z a-z 0-9 _ -; make them "
                "with starlette_session.ids.new_session_id()"
            )
        return self._path(session_id)

    def _session_id_of(self, name: str) -> str | None:
        if not name.startswith(self.file_prefix):
            return None
        session_id = name[len(self.file_prefix) :]
        return session_id if is_valid_session_id(session_id) else None

    # -- blocking work, each run in one worker thread ------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold the directory's lock file: every change to a session file happens under it.

        A new descriptor per use, so the lock excludes other threads of this process as well
        as other processes. Reads take no lock: files are only ever replaced by a rename.
        """
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _live(self, path: Path | str) -> bytes | None:
        try:
            with open(path, "rb") as file:
                content = file.read()
        except FileNotFoundError:
            return None
        expires, start = _parse_header(content)
        if expires is None or expires <= self._clock():
            return None
        return content[start:]

    def _locked_store(self, path: Path, data: bytes, ttl: int, must_exist: bool | None) -> bool:
        """Store ``data``: always (``None``), only over a live record (``True``) or only without one."""
        with self._lock():
            if must_exist is not None and (self._live(path) is not None) is not must_exist:
                return False
            self._store(path, data, ttl)
            return True

    def _locked_swap(self, path: Path, version: object, data: bytes, ttl: int) -> bool:
        with self._lock():
            if self._live(path) != version:
                return False
            self._store(path, data, ttl)
            return True

    def _locked_touch(self, path: Path, ttl: int) -> bool:
        with self._lock():
            data = self._live(path)
            if data is None:
                return False
            self._store(path, data, ttl)
            return True

    def _locked_remove(self, path: Path) -> None:
        with self._lock(), contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _delete_expired_sync(self) -> int:
        with os.scandir(self.directory) as entries:
            candidates = [
                Path(entry.path)
                for entry in entries
                if self._session_id_of(entry.name) is not None and entry.is_file(follow_symlinks=False)
            ]
        deleted = 0
        for path in candidates:
            try:
                # O_NOFOLLOW: a symlink swapped in since the listing is never followed.
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except FileNotFoundError:
                continue
            with os.fdopen(fd, "rb") as file:
                expires, _ = _parse_header(file.read(HEADER_MAX))
            if expires is not None and expires > self._clock():
                continue
            with self._lock():
                # Checked again under the lock: a write may have renewed it since.
                try:
                    with open(path, "rb") as file:
                        expires, _ = _parse_header(file.read(HEADER_MAX))
                except FileNotFoundError:
                    continue
                if expires is None or expires <= self._clock():
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        deleted += 1
        return deleted

    def _store(self, path: Path, data: bytes, ttl: int) -> None:
        """Write header and data to a temporary file next to ``path``, then rename it over ``path``."""
        header = HEADER_MAGIC + b"%.3f\n" % expires_at(ttl, self._clock())
        fd, temp = tempfile.mkstemp(prefix=self._temp_prefix, suffix=_TEMP_SUFFIX, dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as file:
                if self.file_mode != 0o600:  # mkstemp already made it 0o600
                    os.fchmod(file.fileno(), self.file_mode)
                file.write(header)
                file.write(data)
                if self.fsync:
                    file.flush()
                    os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            _discard(temp)
            raise
        if self.fsync:
            _fsync_directory(self.directory)


def _parse_header(content: bytes) -> tuple[float | None, int]:
    """Return the expiry in the header and where the data starts; ``(None, 0)`` if corrupt."""
    end = content.find(b"\n", 0, HEADER_MAX)
    if end < 0 or not content.startswith(HEADER_MAGIC):
        return None, 0
    try:
        expires = float(content[len(HEADER_MAGIC) : end].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None, 0
    if not math.isfinite(expires):
        return None, 0
    return expires, end + 1


def _discard(temp: str) -> None:
    # Best effort: a leftover temporary file is harmless (dotted, ignored by listings).
    with contextlib.suppress(OSError):
        os.unlink(temp)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
