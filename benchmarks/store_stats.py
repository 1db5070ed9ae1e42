"""Command counters read from the servers themselves: Redis ``INFO commandstats``, memcached ``stats``.

A workload's store round trips per request are ``(after - before) / requests``, per command.
The counters come over plain sockets, so no client library is involved in counting, and
the probe's own commands are left out (``INFO`` on Redis; memcached's ``stats`` is not
counted by memcached).

Two quirks of the servers' counters are undone here: Redis also counts the commands a Lua
script runs (``fold_redis_scripts``), and memcached counts ``set``, ``add``, ``replace`` and
``cas`` together in ``cmd_set`` and ``get`` with ``gets`` in ``cmd_get`` (``cas`` is taken
out of ``set`` from its own counters).
"""

from __future__ import annotations

import socket
from collections import Counter

_REDIS_IGNORED = frozenset({"info", "hello", "client|setinfo", "client|setname", "select", "ping"})
"""Probe and connection set-up commands, which are not part of a session's work."""

MEMCACHED_COUNTERS = {
    "get": ("cmd_get",),
    "set": ("cmd_set",),
    "cas": ("cas_hits", "cas_misses", "cas_badval"),
    "delete": ("delete_hits", "delete_misses"),
    "touch": ("cmd_touch",),
}
"""Our name of each command -> memcached's counters summed for it (``get`` includes ``gets``;
``set`` includes ``add`` and ``replace``; ``cas`` is subtracted from ``set``)."""

#: The compare-and-set script of the Redis backends runs one GET and, when it swaps, one SET.
_REDIS_SCRIPT_COMMANDS = ("GET", "SET")


def _read_until(sock: socket.socket, terminator: bytes) -> bytes:
    data = b""
    while not data.endswith(terminator):
        chunk = sock.recv(65_536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


def redis_commandstats(address: tuple[str, int]) -> Counter[str]:
    """Return the calls per command counted by the Redis server at ``address``.

    Connection set-up commands (``HELLO``, ``CLIENT SETINFO``, ``SELECT``...) and ``INFO`` are
    left out.
    """
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        head = b""
        while b"\r\n" not in head:
            head += sock.recv(64)
        size_line, _, rest = head.partition(b"\r\n")
        size = int(size_line[1:])
        body = rest
        while len(body) < size + 2:
            chunk = sock.recv(65_536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            body += chunk
    counts: Counter[str] = Counter()
    for line in body[:size].decode().splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name, _, fields = line.removeprefix("cmdstat_").partition(":")
        if name in _REDIS_IGNORED:
            continue
        values = dict(field.split("=", 1) for field in fields.split(","))
        counts[name.upper()] = int(values["calls"])
    return counts


def memcached_stats(address: tuple[str, int]) -> Counter[str]:
    """Return memcached's get/set/delete/touch command counters at ``address``."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"stats\r\n")
        raw = _read_until(sock, b"END\r\n").decode()
    stats: dict[str, int] = {}
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STAT" and parts[2].isdigit():
            stats[parts[1]] = int(parts[2])
    counts = Counter(
        {name: sum(stats.get(key, 0) for key in keys) for name, keys in MEMCACHED_COUNTERS.items()}
    )
    counts["set"] -= counts["cas"]  # cmd_set counts cas commands too
    return counts


def fold_redis_scripts(before: Counter[str], after: Counter[str]) -> Counter[str]:
    """Return ``after`` without the commands that ``EVAL`` scripts ran since ``before``.

    Redis counts a script's ``redis.call`` commands in ``INFO commandstats`` as if clients had
    sent them. The merge mode's compare-and-set script runs one ``GET`` and, when the record is
    still the one read, one ``SET``; the benchmark's requests never conflict (one at a time),
    so every ``EVAL`` swapped and one ``GET`` and one ``SET`` per ``EVAL`` are taken out.
    """
    scripts = (after["EVAL"] - before["EVAL"]) + (after["EVALSHA"] - before["EVALSHA"])
    folded = Counter(after)
    for name in _REDIS_SCRIPT_COMMANDS:
        folded[name] -= scripts
    return folded


def per_request(before: Counter[str], after: Counter[str], requests: int) -> dict[str, float]:
    """Return each command's calls per request between two snapshots (zeros left out)."""
    result: dict[str, float] = {}
    for name in sorted(set(before) | set(after)):
        delta = after[name] - before[name]
        if delta:
            result[name] = round(delta / requests, 3)
    return result


def redis_server_version(address: tuple[str, int]) -> str:
    """Return ``redis_version`` from ``INFO server``."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"INFO server\r\n")
        raw = b""
        while b"redis_version:" not in raw or not raw.endswith(b"\r\n"):
            chunk = sock.recv(65_536)
            if not chunk:
                break
            raw += chunk
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("redis_version:"):
            return line.partition(":")[2].strip()
    return "unknown"


def memcached_version(address: tuple[str, int]) -> str:
    """Return the version memcached reports."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"version\r\n")
        raw = _read_until(sock, b"\r\n").decode()
    return raw.removeprefix("VERSION").strip()
