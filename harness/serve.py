"""Serve an aiohttp app until SIGINT/SIGTERM, reporting the bound port (port 0 picks a free one)."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import threading

from aiohttp import web


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
    """Wait until something listens on host:port (TimeoutError after `timeout` seconds)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s") from None
            time.sleep(0.2)


class BindError(OSError):
    """The address cannot be listened on; the message says why and what to do, in one line."""


def bind(host: str = "127.0.0.1", port: int = 0, reuse_port: bool = False) -> socket.socket:
    """A listening socket, bound before anything else is set up (a port in use leaves nothing behind).
    `reuse_port`: SO_REUSEPORT, so several processes share the port (the kernel spreads connections)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise BindError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"port {port} on {host} is already in use: pick another with --port (0 picks a free "
                            f"one)") from None
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def start_app(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                    reuse_port: bool = False, sock: socket.socket | None = None) -> tuple[web.AppRunner, int]:
    sock = sock or bind(host, port, reuse_port)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=2048).start()
    return runner, sock.getsockname()[1]


def serve_forever(app: web.Application, host: str = "127.0.0.1", port: int = 0, on_ready=None,
                  reuse_port: bool = False, sock: socket.socket | None = None, on_stop=None) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly (on_cleanup hooks run, then `on_stop`).
    Bind first with `bind` (or pass `sock`): a port in use raises BindError before the app starts."""
    sock = sock or bind(host, port, reuse_port)

    async def main():
        runner, bound = await start_app(app, host, port, reuse_port, sock)
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
            if on_stop:
                on_stop()

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
