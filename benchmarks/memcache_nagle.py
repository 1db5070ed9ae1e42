"""Measure the Nagle + delayed-ACK stall of pymemcache's ``Client`` (``no_delay=False``).

Starts its own memcached on an ephemeral loopback port, then times ``pairs`` get+set
round trips with a plain ``Client((host, port))`` and with ``Client(..., no_delay=True)``,
each also with ``default_noreply`` on (pymemcache's default) and off (what the session
backend uses: acknowledged writes)::

    .venv/bin/python benchmarks/memcache_nagle.py [--pairs 200] [--size 300]

Needs ``/usr/bin/memcached`` (or ``MEMCACHED`` pointing at one).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator

from pymemcache.client.base import Client


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def memcached() -> Iterator[tuple[str, int]]:
    """Run a throwaway memcached on 127.0.0.1 and yield its address."""
    binary = os.environ.get("MEMCACHED", "/usr/bin/memcached")
    port = _free_port()
    command = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:  # memcached refuses to run as root unless told which user to be
        command += ["-u", "root"]
    proc = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("memcached did not start") from None
                time.sleep(0.05)
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def time_pairs(client: Client, pairs: int, value: bytes, noreply: bool) -> float:
    """Return the seconds taken by ``pairs`` set+get round trips."""
    client.set("warmup", value, expire=60, noreply=noreply)
    client.get("warmup")
    start = time.perf_counter()
    for i in range(pairs):
        key = f"nagle:{i}"
        client.set(key, value, expire=60, noreply=noreply)
        client.get(key)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--size", type=int, default=300, help="value size in bytes")
    args = parser.parse_args()
    value = b"x" * args.size
    with memcached() as server:
        print(f"memcached on {server[0]}:{server[1]}, {args.pairs} set+get pairs, {args.size}-byte values")
        for no_delay in (False, True):
            for noreply in (True, False):
                client = Client(server, no_delay=no_delay)
                try:
                    elapsed = time_pairs(client, args.pairs, value, noreply)
                finally:
                    client.close()
                per_pair_ms = elapsed / args.pairs * 1000
                print(
                    f"no_delay={no_delay!s:5}  noreply={noreply!s:5}  "
                    f"total {elapsed * 1000:8.1f} ms  per pair {per_pair_ms:6.2f} ms"
                )


if __name__ == "__main__":
    main()
