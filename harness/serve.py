"""Serve an aiohttp app until SIGINT/SIGTERM, reporting the bound port (port 0 picks a free one)."""

from __future__ import annotations

import asyncio
import signal
import socket

from aiohttp import web


async def start_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock, backlog=2048).start()
    return runner, sock.getsockname()[1]


def serve_forever(app: web.Application, host: str = "127.0.0.1", port: int = 0, on_ready=None) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly (on_cleanup hooks run)."""

    async def main():
        runner, bound = await start_app(app, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready:
            on_ready(bound)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
