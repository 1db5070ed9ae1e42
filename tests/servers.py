"""Real Redis, Redis Cluster, memcached and PostgreSQL servers for tests and benchmarks.

Every server runs as a child process on 127.0.0.1, on a free ephemeral port, in its own temporary
directory, with no persistence. Two ways to use them:

* as a pytest plugin (``pytest_plugins = ["tests.servers"]``): the session-scoped fixtures
  ``redis_url``, ``redis_cluster_nodes``, ``memcached_addresses`` and ``postgres_dsn`` start their
  server on first use and stop it when the test session ends;
* as plain context managers (``start_redis()``, ``start_redis_cluster()``, ``start_memcached()``,
  ``start_postgres()``) from benchmarks and end-to-end scripts; ``start_redis_tls()`` runs a
  TLS-only Redis server with the certificates ``make_tls_files()`` makes.

``serve_uvicorn()`` runs one of the test apps under uvicorn the same way, for the end-to-end tests.

A missing server binary is an error that says how to install it, never a skip: a backend that was
not tested must not look as if it passed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

__all__ = [
    "HOST",
    "ServerError",
    "ServerNotInstalledError",
    "TLSFiles",
    "make_tls_files",
    "memcached_addresses",
    "postgres_dsn",
    "redis_cluster_nodes",
    "redis_url",
    "serve_uvicorn",
    "start_memcached",
    "start_postgres",
    "start_redis",
    "start_redis_cluster",
    "start_redis_tls",
]

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
"""Seconds a server gets to answer its readiness probe."""
STOP_TIMEOUT = 10.0
"""Seconds a server gets to exit after its stop signal, before it is killed."""
START_ATTEMPTS = 3
"""Fresh ports to try when a server dies on start-up (another process took the port meanwhile)."""
CLUSTER_BUS_OFFSET = 10_000
"""Redis Cluster listens on its port plus this offset for the node-to-node bus."""
INSTALL_HINT = (
    "Install the test servers with scripts/install-servers.sh "
    "(or: apt-get install redis-server redis-tools memcached postgresql)."
)
LOG_TAIL_LINES = 40
UVICORN_START_TIMEOUT = 30.0
"""Seconds uvicorn gets to answer ``GET /health``."""
_REPO = Path(__file__).resolve().parent.parent

_PR_SET_PDEATHSIG = 1

STARTUP_SECONDS: dict[str, float] = {}
"""Start-up time of each fixture's server(s) in this test session, shown in the terminal summary."""


class ServerError(RuntimeError):
    """A test server could not be started, did not become ready, or failed a setup step."""


class ServerNotInstalledError(ServerError):
    """A server binary is missing from this machine."""


@dataclass(frozen=True)
class _User:
    """An unprivileged account to run a server as when we are root."""

    name: str
    uid: int
    gid: int


# --------------------------------------------------------------------------------------------
# Generic process handling: one helper starts, probes and stops every server.
# --------------------------------------------------------------------------------------------


def _require(binary: str) -> str:
    """Return the path of ``binary`` on PATH.

    Raises:
        ServerNotInstalledError: the binary is not installed.
    """
    path = shutil.which(binary)
    if path is None:
        raise ServerNotInstalledError(f"{binary!r} was not found on PATH. {INSTALL_HINT}")
    return path


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port(bus_offset: int | None = None) -> int:
    """Pick a free port on HOST by binding port 0.

    Args:
        bus_offset: when given, ``port + bus_offset`` must be free too and stay a valid port
            (Redis Cluster's bus port).

    Raises:
        ServerError: no suitable port was found.
    """
    max_port = 65_535 - (bus_offset or 0)
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if bus_offset is None:
            return port
        if port <= max_port and _port_is_free(port + bus_offset):
            return port
    raise ServerError(f"no free port pair (port, port + {bus_offset}) found on {HOST}")


def _log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(log is empty)"


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child get ``sig`` when the test process dies.

    Normal teardown stops every server; this only keeps a SIGKILLed test run from leaving servers
    behind. Linux only. The signal is sent when the *thread* that started the server exits, so start
    servers from a long-lived thread (pytest fixtures run in the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    # Load libc in the parent: the child must not import or allocate more than needed after fork.
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


def _stop(proc: subprocess.Popen[bytes], stop_signal: int) -> None:
    """Stop ``proc`` with ``stop_signal``, SIGKILL its process group if it lingers, and reap it."""
    if proc.poll() is None:
        proc.send_signal(stop_signal)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # The whole process group (its own session), so no child of a stuck server survives.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _spawn(
    argv: Sequence[str], log_path: Path, workdir: Path, user: _User | None, stop_signal: int
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            # Own session: a Ctrl-C in the terminal reaches pytest, whose teardown stops the server.
            start_new_session=True,
            preexec_fn=_die_with_parent(stop_signal),  # noqa: PLW1509 - only calls prctl(2)
            user=None if user is None else user.uid,
            group=None if user is None else user.gid,
            extra_groups=None if user is None else [],
        )


@contextlib.contextmanager
def _serve(
    name: str,
    argv: Callable[[int], Sequence[str]],
    ready: Callable[[int], bool],
    *,
    workdir: Path,
    user: _User | None = None,
    stop_signal: int = signal.SIGTERM,
    bus_offset: int | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[int]:
    """Run one server process on a free port until the ``with`` block ends.

    Args:
        name: label for logs and error messages.
        argv: builds the command line for a given port.
        ready: probe called with the port; True once the server answers. ``OSError`` counts as False.
        workdir: the server's own directory; its output goes to ``<workdir>/<name>.log``.
        user: run the process as this account (when we are root).
        stop_signal: the signal for a clean, prompt shutdown.
        bus_offset: also require ``port + bus_offset`` to be free (Redis Cluster bus).
        timeout: seconds to wait for ``ready``.

    Returns:
        A context manager yielding the port.

    Raises:
        ServerError: the server kept dying on start-up, or did not become ready in time.
    """
    log_path = workdir / f"{name}.log"
    for _attempt in range(START_ATTEMPTS):
        port = _free_port(bus_offset)
        proc = _spawn(argv(port), log_path, workdir, user, stop_signal)
        try:
            started = _wait_ready(proc, port, ready, timeout)
        except ServerError as exc:
            _stop(proc, stop_signal)
            raise ServerError(f"{name} {exc}; log tail:\n{_log_tail(log_path)}") from None
        except BaseException:
            _stop(proc, stop_signal)
            raise
        if started:
            break
        # The process exited during start-up, most likely because the port was taken meanwhile.
        _stop(proc, stop_signal)
    else:
        raise ServerError(
            f"{name} exited during start-up {START_ATTEMPTS} times; log tail:\n{_log_tail(log_path)}"
        )
    try:
        yield port
    finally:
        _stop(proc, stop_signal)


def _wait_ready(
    proc: subprocess.Popen[bytes], port: int, ready: Callable[[int], bool], timeout: float
) -> bool:
    """Poll ``ready(port)`` until it is true (True) or the process exits (False).

    Raises:
        ServerError: ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if ready(port):
                return True
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)
    raise ServerError(f"not ready on port {port} after {timeout:g} s")


@contextlib.contextmanager
def serve_uvicorn(
    app: str, log_path: Path, *options: str, env: Mapping[str, str] | None = None
) -> Iterator[int]:
    """Run ``uvicorn <app> <options>`` from the repository root on a free port; yield the port.

    Args:
        app: the ``module:attribute`` to serve; it must answer ``GET /health`` with 200.
        log_path: uvicorn's output is appended here.
        options: more uvicorn arguments (``--workers 2``).
        env: the environment (default: this process's).

    Raises:
        AssertionError: uvicorn kept exiting on start-up, or did not answer in time.
    """
    for _attempt in range(START_ATTEMPTS):
        port = _free_port()
        argv = [sys.executable, "-m", "uvicorn", app, *options]
        argv += ["--host", HOST, "--port", str(port), "--no-access-log"]
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=_REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one at teardown
            )
        try:
            if _wait_uvicorn_ready(proc, f"http://{HOST}:{port}"):
                break
        except BaseException:
            _stop_uvicorn(proc)
            raise
        _stop_uvicorn(proc)  # exited during start-up: most likely the port was taken meanwhile
    else:
        raise AssertionError(f"uvicorn kept exiting on start-up:\n{log_path.read_text(errors='replace')}")
    try:
        yield port
    finally:
        _stop_uvicorn(proc)


def _stop_uvicorn(proc: subprocess.Popen[bytes]) -> None:
    """Stop uvicorn and its workers: SIGTERM to the process group, SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            continue
        break
    # The workers are in the same group; make sure none outlived the parent.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait_uvicorn_ready(proc: subprocess.Popen[bytes], base_url: str) -> bool:
    """Poll /health until it answers (True) or uvicorn exits (False).

    Raises:
        AssertionError: uvicorn did not answer within UVICORN_START_TIMEOUT seconds.
    """
    deadline = time.monotonic() + UVICORN_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with httpx.Client(timeout=2.0) as client:
                if client.get(f"{base_url}/health").status_code == 200:
                    return True
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError(f"uvicorn did not answer on {base_url} within {UVICORN_START_TIMEOUT:g} s")


def _wait_until(what: str, check: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
    """Poll ``check`` until true.

    Raises:
        ServerError: ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass  # the server is still settling
        time.sleep(0.1)
    raise ServerError(f"timed out after {timeout:g} s waiting for {what}")


def _run(argv: Sequence[str], what: str, *, user: _User | None = None, cwd: Path | None = None) -> str:
    """Run a setup command to completion and return its output.

    Raises:
        ServerError: the command failed or hung; the message carries its output.
    """
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
            check=False,
            user=None if user is None else user.uid,
            group=None if user is None else user.gid,
            extra_groups=None if user is None else [],
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what} hung: {' '.join(argv)}") from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-LOG_TAIL_LINES:])
        raise ServerError(f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{tail}")
    return output


@contextlib.contextmanager
def _tempdir(name: str, owner: _User | None = None) -> Iterator[Path]:
    """A private temporary directory, owned by ``owner`` when given, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"starlette-session-{name}-"))
    try:
        if owner is not None:
            os.chown(path, owner.uid, owner.gid)
        yield path
    finally:
        # Leftover files in /tmp must not turn a finished run red.
        shutil.rmtree(path, ignore_errors=True)


def _unprivileged_user(*preferred: str) -> _User | None:
    """The first existing account of ``preferred`` to run a server as, or None when we are not root.

    Servers that refuse root are started as this account by ``subprocess`` rather than switching
    user themselves, which would clear the parent-death signal set by ``_die_with_parent``.

    Raises:
        ServerError: we are root and none of the accounts exists.
    """
    if os.geteuid() != 0:
        return None
    for name in preferred:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _User(entry.pw_name, entry.pw_uid, entry.pw_gid)
    raise ServerError(f"running as root, but none of the accounts {preferred} exists to run the server")


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


def _redis_call(port: int, *args: str) -> bytes:
    """Send one command over RESP and return a simple reply line or a bulk string's payload."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((HOST, port), timeout=2.0) as sock, sock.makefile("rb") as reply:
        sock.sendall(b"".join(parts))
        line = reply.readline()
        if line.startswith(b"$"):
            size = int(line[1:])
            return reply.read(size) if size >= 0 else b""
        return line.rstrip(b"\r\n")


def _redis_ready(port: int) -> bool:
    # A loading server answers -LOADING, which is not ready.
    return _redis_call(port, "PING") == b"+PONG"


@contextlib.contextmanager
def _redis_node(
    *,
    cluster: bool = False,
    extra_args: Sequence[str] = (),
    ready: Callable[[int], bool] = _redis_ready,
    tls: TLSFiles | None = None,
) -> Iterator[int]:
    binary = _require("redis-server")
    with _tempdir("redis") as workdir:

        def argv(port: int) -> list[str]:
            listen = ["--port", str(port)]
            if tls is not None:  # TLS only: no plain-text port at all
                listen = [
                    "--port", "0",
                    "--tls-port", str(port),
                    "--tls-cert-file", str(tls.cert),
                    "--tls-key-file", str(tls.key),
                    "--tls-ca-cert-file", str(tls.ca),
                    "--tls-auth-clients", "no",
                ]  # fmt: skip
            args = [
                binary,
                *listen,
                "--bind", HOST,
                "--dir", str(workdir),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ]  # fmt: skip
            if cluster:
                args += ["--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf")]
            return [*args, *extra_args]

        with _serve(
            "redis-server",
            argv,
            ready,
            workdir=workdir,
            bus_offset=CLUSTER_BUS_OFFSET if cluster else None,
        ) as port:
            yield port


def _redis_answers(port: int) -> bool:
    # A server with ``requirepass`` answers an unauthenticated PING with -NOAUTH: it is serving.
    reply = _redis_call(port, "PING")
    return reply == b"+PONG" or reply.startswith(b"-NOAUTH")


@contextlib.contextmanager
def start_redis(*, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Run a standalone Redis server without persistence.

    Args:
        extra_args: more ``redis-server`` options, appended to the defaults (such as
            ``["--requirepass", "secret"]``). A server that asks for a password counts as ready
            once it answers an unauthenticated ``PING`` with ``-NOAUTH``.

    Returns:
        A context manager yielding ``"redis://127.0.0.1:PORT/0"`` (with no credentials in it).

    Raises:
        ServerError: the server could not be started (``ServerNotInstalledError`` if missing).
    """
    ready = _redis_answers if extra_args else _redis_ready
    with _redis_node(extra_args=extra_args, ready=ready) as port:
        yield f"redis://{HOST}:{port}/0"


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a throw-away certificate authority and of a server certificate it signed."""

    ca: Path
    """The CA's certificate: what a client trusts."""
    cert: Path
    """The server's certificate, for ``127.0.0.1`` (an IP address SAN) and ``localhost``."""
    key: Path
    """The server certificate's private key (unencrypted)."""


def _key_usage(*allowed: str) -> Any:
    """An ``x509.KeyUsage`` with the named uses on and every other use off."""
    from cryptography import x509  # noqa: PLC0415

    uses = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    return x509.KeyUsage(**{use: use in allowed for use in uses})


def make_tls_files(directory: Path, *, name: str = "test") -> TLSFiles:
    """Write a new CA and a server certificate it signed for 127.0.0.1 into ``directory``.

    The keys are P-256 and live for a day; nothing is reused between calls, so two calls give two
    CAs that do not trust each other's certificates.

    Args:
        directory: an existing directory; the files are ``<name>-ca.pem``, ``<name>-server.pem``
            and ``<name>-server.key``.
        name: the files' prefix and the CA's common name.

    Returns:
        The paths of the files written.
    """
    import datetime  # noqa: PLC0415 - only TLS tests need these
    import ipaddress  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} throw-away CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage("digital_signature", "key_cert_sign", "crl_sign"),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            _key_usage("digital_signature", "key_agreement"),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    files = TLSFiles(
        ca=directory / f"{name}-ca.pem",
        cert=directory / f"{name}-server.pem",
        key=directory / f"{name}-server.key",
    )
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files


def _redis_tls_ready(ca: Path, port: int) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((HOST, port), timeout=2.0) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as sock,
        sock.makefile("rb") as reply,
    ):
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return reply.readline() == b"+PONG\r\n"


@contextlib.contextmanager
def start_redis_tls(tls: TLSFiles, *, extra_args: Sequence[str] = ()) -> Iterator[int]:
    """Run a standalone Redis server that speaks TLS only (no plain-text port).

    Clients need not present a certificate (``--tls-auth-clients no``); they check the server's
    against ``tls.ca``. ``make_tls_files()`` makes the files.

    Args:
        tls: the server's certificate, its key and the CA that signed it.
        extra_args: more ``redis-server`` options, appended to the defaults.

    Returns:
        A context manager yielding the TLS port on 127.0.0.1.

    Raises:
        ServerError: the server could not be started, for instance when this redis-server was
            built without TLS (``ServerNotInstalledError`` if it is missing).
    """
    ready = functools.partial(_redis_tls_ready, tls.ca)
    with _redis_node(extra_args=extra_args, ready=ready, tls=tls) as port:
        yield port


def _cluster_ok(port: int, nodes: int) -> bool:
    info = _redis_call(port, "CLUSTER", "INFO").decode()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return fields.get("cluster_state") == "ok" and fields.get("cluster_known_nodes") == str(nodes)


@contextlib.contextmanager
def start_redis_cluster(masters: int = 3) -> Iterator[list[tuple[str, int]]]:
    """Run a Redis Cluster of ``masters`` master nodes and no replicas.

    Args:
        masters: number of nodes; Redis needs at least 3.

    Returns:
        A context manager yielding the nodes' ``(host, port)`` pairs.

    Raises:
        ServerError: a node could not be started or the cluster did not form.
    """
    cli = _require("redis-cli")
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(_redis_node(cluster=True)) for _ in range(masters)]
        addresses = [f"{HOST}:{port}" for port in ports]
        create = [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
        _run(create, "redis-cli --cluster create")
        for port in ports:
            _wait_until(f"cluster_state:ok on {HOST}:{port}", functools.partial(_cluster_ok, port, masters))
        yield [(HOST, port) for port in ports]


# --------------------------------------------------------------------------------------------
# memcached
# --------------------------------------------------------------------------------------------


def _memcached_ready(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=2.0) as sock, sock.makefile("rb") as reply:
        sock.sendall(b"version\r\n")
        return reply.readline().startswith(b"VERSION ")


@contextlib.contextmanager
def start_memcached() -> Iterator[tuple[str, int]]:
    """Run one memcached server (TCP only, 64 MB).

    Returns:
        A context manager yielding its ``(host, port)``.

    Raises:
        ServerError: the server could not be started (``ServerNotInstalledError`` if missing).
    """
    binary = _require("memcached")
    # memcached refuses to run as root.
    user = _unprivileged_user("nobody")
    with _tempdir("memcached", owner=user) as workdir:

        def argv(port: int) -> list[str]:
            return [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", "64"]

        with _serve("memcached", argv, _memcached_ready, workdir=workdir, user=user) as port:
            yield (HOST, port)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def _postgres_bindir() -> Path:
    """Find the directory holding ``initdb`` and ``postgres``.

    Raises:
        ServerNotInstalledError: no PostgreSQL server is installed.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        candidates.append(Path(_run([pg_config, "--bindir"], "pg_config --bindir").strip()))

    def version(bindir: Path) -> int:
        return int(bindir.parent.name) if bindir.parent.name.isdigit() else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "postgres", "pg_isready", "createdb")):
            return bindir
    raise ServerNotInstalledError(
        f"no PostgreSQL server binaries (initdb, postgres) found via pg_config or under "
        f"/usr/lib/postgresql/*/bin. {INSTALL_HINT}"
    )


@contextlib.contextmanager
def start_postgres(database: str = "sessions_test") -> Iterator[str]:
    """Run a throw-away PostgreSQL cluster with trust authentication and fsync off.

    As root, the server runs as the ``postgres`` account (or ``nobody``): initdb refuses root.

    Args:
        database: name of the database to create.

    Returns:
        A context manager yielding ``"postgresql://USER@127.0.0.1:PORT/<database>"``.

    Raises:
        ServerError: the cluster could not be created or started (``ServerNotInstalledError`` if
            PostgreSQL is missing).
    """
    bindir = _postgres_bindir()
    user = _unprivileged_user("postgres", "nobody")  # initdb refuses root
    db_user = user.name if user is not None else pwd.getpwuid(os.geteuid()).pw_name
    with _tempdir("postgres", owner=user) as workdir:
        data = workdir / "data"
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", db_user, "--auth=trust"]
        _run([*initdb, "--encoding=UTF8", "--no-locale", "--no-sync"], "initdb", user=user, cwd=workdir)

        def argv(port: int) -> list[str]:
            return [
                str(bindir / "postgres"),
                "-D", str(data),
                "-p", str(port),
                "-h", HOST,
                "-k", str(workdir),
                "-F",  # fsync off
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ]  # fmt: skip

        def ready(port: int) -> bool:
            probe = [str(bindir / "pg_isready"), "-q", "-h", HOST, "-p", str(port), "-U", db_user]
            return subprocess.run([*probe, "-d", "postgres", "-t", "1"], check=False).returncode == 0

        # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients a test left open.
        with _serve("postgres", argv, ready, workdir=workdir, user=user, stop_signal=signal.SIGINT) as port:
            _run(
                [str(bindir / "createdb"), "-w", "-h", HOST, "-p", str(port), "-U", db_user, database],
                "createdb",
            )
            yield f"postgresql://{db_user}@{HOST}:{port}/{database}"


# --------------------------------------------------------------------------------------------
# pytest fixtures
# --------------------------------------------------------------------------------------------


_T = TypeVar("_T")


def _fixture(name: str, server: contextlib.AbstractContextManager[_T]) -> Iterator[_T]:
    """Run ``server`` for a fixture: time its start-up, and turn errors into failures, never skips."""
    started = time.perf_counter()
    try:
        with server as value:
            STARTUP_SECONDS[name] = time.perf_counter() - started
            yield value
    except ServerError as exc:
        failure = f"{name}: {exc}"
    else:
        return
    # Outside the except block, so the report shows the reason alone, not a chained traceback.
    pytest.fail(failure, pytrace=False)


@contextlib.contextmanager
def _memcached_pair() -> Iterator[list[tuple[str, int]]]:
    with start_memcached() as first, start_memcached() as second:
        yield [first, second]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a standalone Redis server shared by the whole test session."""
    yield from _fixture("redis", start_redis())


@pytest.fixture(scope="session")
def redis_cluster_nodes() -> Iterator[list[tuple[str, int]]]:
    """``(host, port)`` of each master of a 3-master Redis Cluster shared by the test session."""
    yield from _fixture("redis cluster", start_redis_cluster())


@pytest.fixture(scope="session")
def memcached_addresses() -> Iterator[list[tuple[str, int]]]:
    """``(host, port)`` of two independent memcached servers shared by the test session."""
    yield from _fixture("memcached x2", _memcached_pair())


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """``postgresql://USER@127.0.0.1:PORT/sessions_test`` of a PostgreSQL server for the session."""
    yield from _fixture("postgres", start_postgres())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long each real server took to start, when any was used."""
    if STARTUP_SECONDS:
        times = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in STARTUP_SECONDS.items())
        terminalreporter.write_line(f"test servers started: {times}")
