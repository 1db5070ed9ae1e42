"""A TCP proxy on 127.0.0.1 that adds a fixed latency to every request sent to a store.

Each chunk from a client is held ``delay`` seconds before it is forwarded to the server;
answers come back at once. So every command round trip takes ``delay`` longer, like a store
on another host, while throughput is not limited: chunks wait side by side, not in a line.

It runs in its own process (``start_latency_proxy``), for two reasons: a middleware that
blocks the event loop on a sync client must not stall the proxy too (it would deadlock if they
shared a loop), and the proxy's work must not take the benchmark's GIL. Its event loop uses
``select()``, whose timeout has microsecond resolution (epoll's is a millisecond, which would
turn 1.3 ms into 2 ms)::

    python -m benchmarks.latency_proxy --target 127.0.0.1:6379 --delay-ms 1.3
    # prints the port it listens on, then serves until stdin closes or SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator

HOST = "127.0.0.1"
CHUNK = 65_536


async def _delayed_pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    forwarder = asyncio.create_task(forward())
    try:
        while True:
            chunk = await reader.read(CHUNK)
            queue.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
    except OSError:
        queue.put_nowait((0.0, b""))
    await forwarder


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    writer.close()


async def serve(target: tuple[str, int], delay: float, ready: asyncio.Future[int] | None = None) -> None:
    """Proxy connections on a free port of 127.0.0.1 to ``target`` until cancelled.

    Args:
        target: the store's ``(host, port)``.
        delay: seconds each client chunk is held.
        ready: set to the listening port once the proxy accepts connections.
    """

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                _delayed_pump(client_reader, server_writer, delay),
                _pump(server_reader, client_writer),
            )
        except (OSError, asyncio.CancelledError):
            # A reset, or the proxy shutting down. Not re-raised: start_server's callback
            # would report a cancelled handler as an error, and the process is exiting.
            pass
        finally:
            client_writer.close()
            server_writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port: int = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready.set_result(port)
    async with server:
        await server.serve_forever()


async def _main(target: tuple[str, int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[int] = loop.create_future()
    asyncio.create_task(serve(target, delay, ready))  # noqa: RUF006 - cancelled with the rest below
    port = await ready
    print(port, flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Also stop when the parent goes away (its end of our stdin closes).
    loop.add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    # Connections still open are cut too, so the loop closes with no task pending.
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for other in others:
        other.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def _parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description="TCP proxy adding latency to each client chunk")
    parser.add_argument("--target", required=True, help="HOST:PORT of the store")
    parser.add_argument("--delay-ms", type=float, default=1.3)
    args = parser.parse_args()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(_main(_parse_address(args.target), args.delay_ms / 1000))
    finally:
        loop.close()


@contextlib.contextmanager
def start_latency_proxy(target: tuple[str, int], delay_ms: float) -> Iterator[tuple[str, int]]:
    """Run the proxy in a child process and yield its ``(host, port)``.

    Args:
        target: the store's ``(host, port)``.
        delay_ms: milliseconds added to each round trip.

    Raises:
        RuntimeError: the proxy did not start.
    """
    argv = [
        sys.executable,
        "-m",
        "benchmarks.latency_proxy",
        "--target",
        f"{target[0]}:{target[1]}",
        "--delay-ms",
        str(delay_ms),
    ]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"latency proxy did not start (said {line!r})")
        yield (HOST, int(line))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
