"""File backend: one file per session in a directory, shared by every worker process.

Blocking file I/O is bridged to a worker thread with ``run_sync``, one thread hop per
operation. Each file holds a one-line header with the expiry (a Unix timestamp), then the
session bytes. Writes go to a temporary file in the same directory, then ``os.replace``
it over the session file, so a reader in any process sees the old record or the new one,
never a part of either. No lock is needed, so several worker processes can share the
directory; the last write wins, as with every other backend.

Ids are validated before they become a file name, so no id can name a path outside the
directory: an invalid id reads as missing, and writing or removing one raises
``ConfigurationError`` (the middleware never produces such ids; a caller who does has a bug).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from starlette_session._bridge import run_sync
from starlette_session.exceptions import BackendError, ConfigurationError
from starlette_session.expiry import expires_at
from starlette_session.ids import is_valid_session_id
from starlette_session.interfaces import SessionBackend

#: The first line of every session file: this magic, the expiry timestamp, then ``\n``.
HEADER_MAGIC = b"starlette-session/1 "
#: A header longer than this is corrupt; it bounds what ``delete_expired`` reads per file.
HEADER_MAX = 64

# Never starts with "." (temporary files do) and never holds a path separator.
_VALID_PREFIX = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_TEMP_SUFFIX = ".tmp"


class FileBackend(SessionBackend):
    """Sessions as files in one directory, written atomically, expiry in a header line.

    Expired files are removed when they are read and by ``delete_expired`` (run it from
    cron: ``python -m starlette_session delete-expired``). Blocking I/O runs in a worker
    thread via ``run_sync``.

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

        Raises:
            BackendError: the file exists but cannot be read.
        """
        if not is_valid_session_id(session_id):
            return None
        return await run_sync(self._read_sync, self._path(session_id))

    async def write(self, session_id: str, data: bytes, ttl: int) -> None:
        """Atomically replace the session's file with ``data`` expiring in ``ttl`` seconds.

        Raises:
            ConfigurationError: ``session_id`` is not a valid session id.
            BackendError: the file cannot be written.
        """
        path = self._checked_path(session_id)
        await run_sync(self._write_sync, path, bytes(data), ttl)

    async def remove(self, session_id: str) -> None:
        """Delete the session's file; a missing file is not an error.

        Raises:
            ConfigurationError: ``session_id`` is not a valid session id.
            BackendError: the file exists but cannot be deleted.
        """
        path = self._checked_path(session_id)
        await run_sync(self._remove_sync, path)

    async def touch(self, session_id: str, ttl: int) -> bool:
        """Rewrite the session's expiry atomically; return whether the session exists.

        If another request rewrites or removes the file meanwhile, its change wins.

        Raises:
            BackendError: the file cannot be read or written.
        """
        if not is_valid_session_id(session_id):
            return False
        return await run_sync(self._touch_sync, self._path(session_id), ttl)

    async def delete_expired(self) -> int:
        """Delete expired (and corrupt) session files; return how many this call deleted.

        Temporary files, files without ``file_prefix`` and anything that is not a regular
        file are left alone. A file another process deletes first is not counted.

        Raises:
            BackendError: the directory cannot be listed or a file cannot be deleted.
        """
        return await run_sync(self._delete_expired_sync)

    # -- paths -----------------------------------------------------------------------------

    def _path(self, session_id: str) -> Path:
        # Only called with a validated id: base64url characters cannot leave the directory.
        return self.directory / (self.file_prefix + session_id)

    def _checked_path(self, session_id: str) -> Path:
        if not is_valid_session_id(session_id):
            raise ConfigurationError(
                f"invalid session id {session_id!r:.80}: ids are 16 to 128 characters of "
                "A-Z a-z 0-9 _ -; make them with starlette_session.ids.new_session_id()"
            )
        return self._path(session_id)

    def _session_id_of(self, name: str) -> str | None:
        if not name.startswith(self.file_prefix):
            return None
        session_id = name[len(self.file_prefix) :]
        return session_id if is_valid_session_id(session_id) else None

    # -- blocking work, each run in one worker thread ------------------------------------------

    def _read_sync(self, path: Path) -> bytes | None:
        try:
            with open(path, "rb") as file:
                content = file.read()
                expires, start = _parse_header(content)
                if expires is not None and expires > self._clock():
                    return content[start:]
                # Expired or corrupt: delete it while it is still open (see _unlink_if_same).
                self._unlink_if_same(path, file)
                return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _backend_error("read", path, exc) from exc

    def _write_sync(self, path: Path, data: bytes, ttl: int) -> None:
        temp = self._write_temp(path, data, ttl)
        self._replace(temp, path)

    def _remove_sync(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _backend_error("delete", path, exc) from exc

    def _touch_sync(self, path: Path, ttl: int) -> bool:
        try:
            with open(path, "rb") as file:
                content = file.read()
                expires, start = _parse_header(content)
                if expires is None or expires <= self._clock():
                    self._unlink_if_same(path, file)
                    return False
                temp = self._write_temp(path, content[start:], ttl)
                # A write or remove that landed since we read wins over this touch: the
                # narrow window left is between this check and the rename.
                if not _same_file(path, file):
                    _discard(temp)
                    return path.exists()
                self._replace(temp, path)
                return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _backend_error("touch", path, exc) from exc

    def _delete_expired_sync(self) -> int:
        now = self._clock()
        deleted = 0
        try:
            with os.scandir(self.directory) as entries:
                candidates = [
                    Path(entry.path)
                    for entry in entries
                    if self._session_id_of(entry.name) is not None and entry.is_file(follow_symlinks=False)
                ]
        except OSError as exc:
            raise _backend_error("list", self.directory, exc) from exc
        for path in candidates:
            try:
                # O_NOFOLLOW: a symlink swapped in since the listing is never followed.
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _backend_error("read", path, exc) from exc
            try:
                with os.fdopen(fd, "rb") as file:
                    expires, _ = _parse_header(file.read(HEADER_MAX))
                    if expires is not None and expires > now:
                        continue
                    if self._unlink_if_same(path, file):
                        deleted += 1
            except OSError as exc:
                raise _backend_error("delete", path, exc) from exc
        return deleted

    def _write_temp(self, path: Path, data: bytes, ttl: int) -> str:
        """Write header and data to a new temporary file next to ``path``; return its name."""
        header = HEADER_MAGIC + b"%.3f\n" % expires_at(ttl, self._clock())
        try:
            fd, temp = tempfile.mkstemp(prefix=self._temp_prefix, suffix=_TEMP_SUFFIX, dir=self.directory)
        except OSError as exc:
            raise _backend_error("create a temporary file for", path, exc) from exc
        try:
            with os.fdopen(fd, "wb") as file:
                if self.file_mode != 0o600:  # mkstemp already made it 0o600
                    os.fchmod(file.fileno(), self.file_mode)
                file.write(header)
                file.write(data)
                if self.fsync:
                    file.flush()
                    os.fsync(file.fileno())
        except BaseException as exc:
            _discard(temp)
            if isinstance(exc, OSError):
                raise _backend_error("write", path, exc) from exc
            raise
        return temp

    def _replace(self, temp: str, path: Path) -> None:
        try:
            os.replace(temp, path)
        except OSError as exc:
            _discard(temp)
            raise _backend_error("write", path, exc) from exc
        if self.fsync:
            try:
                _fsync_directory(self.directory)
            except OSError as exc:
                raise _backend_error("sync the directory of", path, exc) from exc

    def _unlink_if_same(self, path: Path, file: BinaryIO) -> bool:
        """Delete ``path`` if it is still the file open as ``file``; return whether it was deleted.

        A writer in another process may have replaced the stale file since we opened it;
        its fresh file must survive. Holding ``file`` open keeps its inode number from
        being reused, so the comparison cannot match a new file by accident.
        """
        if not _same_file(path, file):
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True


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


def _same_file(path: Path, file: BinaryIO) -> bool:
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(file.fileno())
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


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


def _backend_error(action: str, path: Path, exc: OSError) -> BackendError:
    return BackendError(f"file session backend could not {action} {str(path)!r}: {exc}")
