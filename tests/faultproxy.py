"""A loopback TCP proxy that can be cut: the store outages of the outage tests and benchmarks.

``FaultProxy`` listens on 127.0.0.1 (an ephemeral port) and forwards to a real server. Its
``mode`` says what a client sees:

* ``"pass"``: bytes flow both ways;
* ``"refuse"``: nothing listens: connecting is refused (existing connections are reset);
* ``"close"``: connections are accepted and closed at once (existing ones too);
* ``"stall"``: connections are accepted and nothing ever comes back (existing ones freeze).

It runs its own event loop in a daemon thread, so sync clients (in worker threads) and asyncio
clients (on the test's loop) reach it alike. Use it as a context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "close", "stall"]


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; ``set_mode`` cuts it in one of four ways."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._closing = False
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._call(self._setup())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def set_mode(self, mode: Mode) -> None:
        """Switch to ``mode``; returns once the proxy acts on it."""
        self._call(self._switch(mode))

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    async def _setup(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _switch(self, mode: Mode) -> None:
        assert self._flowing is not None
        self.mode = mode
        if mode == "stall":
            self._flowing.clear()
            return
        self._flowing.set()
        if mode in ("refuse", "close"):
            self._drop_all()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif mode != "refuse" and self._server is None:
            await self._listen()

    def _drop_all(self) -> None:
        for writer in list(self._connections):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._connections.clear()

    async def _shutdown(self) -> None:
        self._closing = True
        self._drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Handlers still waiting (a stall, an upstream connect) end here, not when the loop dies.
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The shutdown cancels the handlers still running. A handler task must not end cancelled:
        # on Python < 3.12 the done callback asyncio.start_server puts on it calls
        # task.exception(), which raises CancelledError, and the loop prints "Exception in
        # callback ... CancelledError" for each one.
        try:
            await self._handle(reader, writer)
        except asyncio.CancelledError:
            if not self._closing:
                raise

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "close":
            writer.transport.abort()
            return
        self._connections.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._connections.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()  # a stall freezes the bytes in flight
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
