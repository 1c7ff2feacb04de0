"""Serve an aiohttp app until SIGINT/SIGTERM, reporting the bound port (port 0 picks a free one)."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading

from aiohttp import web


async def start_app(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                    reuse_port: bool = False) -> tuple[web.AppRunner, int]:
    """`reuse_port`: SO_REUSEPORT, so several processes share the port (the kernel spreads connections)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock, backlog=2048).start()
    return runner, sock.getsockname()[1]


def serve_forever(app: web.Application, host: str = "127.0.0.1", port: int = 0, on_ready=None,
                  reuse_port: bool = False) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly (on_cleanup hooks run)."""

    async def main():
        runner, bound = await start_app(app, host, port, reuse_port)
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


class AppThread:
    """An aiohttp app on its own loop and thread; `port` once started."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.loop = asyncio.new_event_loop()
        self.port: int = port

    def __enter__(self):
        ready = threading.Event()
        errors: list[BaseException] = []

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.runner, self.port = self.loop.run_until_complete(start_app(self.app, self.host, self.port))
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
