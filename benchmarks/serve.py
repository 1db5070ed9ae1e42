"""Serve one contender with uvicorn (one worker) on a free port of 127.0.0.1, for the HTTP benchmark.

    python -m benchmarks.serve CONTENDER --workdir DIR [--redis-url URL] [--memcached HOST:PORT]
                               [--bridge-threads N]

Prints the port once it listens, then serves until SIGTERM. The contender's clients are
opened at lifespan start-up, inside uvicorn's event loop, and closed at shutdown.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
from pathlib import Path

import uvicorn

from benchmarks.contenders import CONTENDERS, Contender, Stores
from benchmarks.harness import ASGIApp, Message, Receive, Scope, Send

HOST = "127.0.0.1"


class Hosted:
    """An ASGI app that builds the contender at lifespan start-up and closes it at shutdown."""

    def __init__(self, contender: Contender, stores: Stores) -> None:
        self.contender = contender
        self.stores = stores
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.app is not None, "lifespan start-up has not run"
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with contextlib.AsyncExitStack() as stack:
            message: Message = await receive()
            assert message["type"] == "lifespan.startup"
            self.app = await stack.enter_async_context(self.contender.factory(self.stores))
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})


def main() -> None:
    parser = argparse.ArgumentParser(description="serve one benchmark contender with uvicorn")
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--redis-url")
    parser.add_argument("--memcached", help="HOST:PORT")
    parser.add_argument(
        "--bridge-threads",
        type=int,
        help="threads of the package's sync bridge (starlette_session._bridge.MAX_THREADS)",
    )
    args = parser.parse_args()
    if args.bridge_threads is not None:
        from benchmarks.bridge_threads import set_bridge_threads  # noqa: PLC0415

        set_bridge_threads(args.bridge_threads)
    memcached = None
    if args.memcached:
        host, _, port = args.memcached.rpartition(":")
        memcached = (host, int(port))
    stores = Stores(workdir=args.workdir, redis_url=args.redis_url, memcached=memcached)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        Hosted(CONTENDERS[args.contender], stores),
        workers=1,
        log_level="warning",
        access_log=False,
        lifespan="on",
        backlog=1024,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
