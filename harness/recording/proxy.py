"""The recording reverse proxy: forwards every request, streams answers through live, records.

Each finished exchange is scrubbed and appended to the cassette, which is rewritten atomically
(temp file, fsync, rename) by a single writer that coalesces concurrent exchanges into one write.
A handler returns only after the write that holds its exchange, so a kill -9 loses at most the
exchanges in flight, and the file on disk is always a whole cassette.

Modes: `once` records into a new (or empty) cassette and refuses an existing one; `new_episodes`
answers requests the cassette already holds and records the rest; `all` records everything afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from .format import Cassette, CassetteError, Interaction, append_durably, atomic_write, interactions_yaml, provenance
from .replay import ReplayIndex, answer
from .scrub import Scrubber

log = logging.getLogger("harness.recording")
MODES = ("once", "new_episodes", "all")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}
SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
RESPONSE_DROP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class Recorder:
    """Holds the cassette in memory and keeps the file on disk in step with it.

    The file is written whole (atomically) at start and on shutdown; in between, each batch of
    finished exchanges is appended with one write and an fsync (the interactions list is the last
    key of the file, so an append keeps it a whole cassette). Cost per exchange stays flat however
    long the cassette grows.
    """

    def __init__(self, path: str | Path, mode: str = "once", scrubber: Scrubber | None = None, meta: dict | None = None,
                 on_record=None):
        self.on_record = on_record  # called with (count, interaction) once an exchange is on disk
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.scrubber = scrubber or Scrubber()
        existing = Cassette.load(self.path) if self.path.exists() else Cassette()
        if mode == "once" and existing.interactions:
            raise CassetteError(f"{self.path} already holds {len(existing.interactions)} interactions; "
                                f"mode 'once' never overwrites: use --mode new_episodes or all")
        self.cassette = existing if mode == "new_episodes" else Cassette(meta=existing.meta)
        self.cassette.meta = {**self.cassette.meta, **(meta or {})}
        self.replay = ReplayIndex([existing]) if mode == "new_episodes" else None
        self._pending: list[Interaction] = []
        self._added = 0
        self._written = 0
        self.write_errors = 0
        self._cond = asyncio.Condition()
        self._writer: asyncio.Task | None = None
        self.flush()

    @property
    def recorded(self) -> int:
        return self._added

    def _scrubbed(self, i: Interaction) -> Interaction:
        s = self.scrubber
        body = s.body(i.response_body)
        chunks = i.chunks
        if chunks is not None and body != i.response_body:
            chunks = [len(body)]  # a secret was cut out: chunk sizes no longer add up; keep it whole
        return Interaction(i.method, s.url(i.uri), s.headers(i.request_headers), s.body(i.request_body), i.status,
                           i.reason, s.headers(i.response_headers), body, chunks, i.duration_ms)

    async def add(self, interaction: Interaction) -> None:
        """Append an exchange and return once a write holding it has reached the disk."""
        scrubbed = self._scrubbed(interaction)
        async with self._cond:
            self._pending.append(scrubbed)
            self._added += 1
            mine = self._added
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write_loop())
            await self._cond.wait_for(lambda: self._written >= mine)
        if self.on_record:
            self.on_record(mine, scrubbed)

    async def _write_loop(self) -> None:
        while True:
            async with self._cond:
                batch, self._pending = self._pending, []
                target = self._added
                if not batch:
                    return
                first = not self.cassette.interactions
                self.cassette.interactions.extend(batch)
            try:
                if first:  # `interactions: []` on disk cannot be appended to: write the file whole
                    snapshot = Cassette(list(self.cassette.interactions), dict(self.cassette.meta))
                    await asyncio.to_thread(lambda: atomic_write(self.path, snapshot.to_yaml().encode("utf-8")))
                else:
                    data = await asyncio.to_thread(lambda: interactions_yaml(batch).encode("utf-8"))
                    await asyncio.to_thread(append_durably, self.path, data)
            except Exception as exc:  # never leave a handler waiting: say it loudly, keep serving
                self.write_errors += 1
                log.error("could not write cassette %s: %s", self.path, exc)
            async with self._cond:
                self._written = target
                self._cond.notify_all()

    def flush(self) -> None:
        """Write the whole cassette now (synchronously): at start and on shutdown."""
        self.cassette.interactions.extend(self._pending)
        self._pending = []
        atomic_write(self.path, self.cassette.to_yaml().encode("utf-8"))
        self._written = self._added


def _uri(upstream: str, path_qs: str) -> str:
    return upstream.rstrip("/") + path_qs


def create_proxy_app(upstream: str, recorder: Recorder) -> web.Application:
    """An aiohttp app forwarding to `upstream` (a server root, e.g. http://gpu-node:8000)."""
    upstream = upstream.rstrip("/")
    if upstream.endswith("/v1"):
        upstream = upstream[:-3]

    async def on_startup(app):
        app[SESSION] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def on_cleanup(app):
        await app[SESSION].close()
        recorder.flush()
        log.info("cassette %s: %d interactions", recorder.path, len(recorder.cassette.interactions))

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if recorder.replay is not None:
            hit = recorder.replay.lookup(request.method, request.path_qs, body)
            if hit is not None:
                return await answer(request, hit)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        t0 = time.perf_counter()
        try:
            up = await app[SESSION].request(request.method, _uri(upstream, request.path_qs), headers=headers,
                                              data=body, allow_redirects=False)
        except aiohttp.ClientError as exc:
            return web.json_response({"error": {"message": f"recording proxy: upstream {upstream} unreachable: {exc}",
                                                 "type": "ProxyError", "param": None, "code": 502}}, status=502)
        chunks: list[bytes] = []
        streamed = "text/event-stream" in up.headers.get("content-type", "")
        async with up:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in RESPONSE_DROP}
            resp = web.StreamResponse(status=up.status, reason=up.reason, headers=out_headers)
            await resp.prepare(request)
            try:
                async for data in up.content.iter_any():
                    chunks.append(data)
                    await resp.write(data)
                await resp.write_eof()
            except (aiohttp.ClientError, ConnectionResetError) as exc:
                log.warning("exchange %s %s cut: %s (recorded as far as it went)", request.method, request.path, exc)
        req_headers: dict[str, list[str]] = {}
        for k, v in request.headers.items():
            if k.lower() not in HOP_BY_HOP:
                req_headers.setdefault(str(k), []).append(v)
        resp_headers: dict[str, list[str]] = {}
        for k, v in up.headers.items():
            if k.lower() not in ("connection", "keep-alive", "transfer-encoding"):
                resp_headers.setdefault(str(k), []).append(v)
        inter = Interaction(request.method, _uri(upstream, request.path_qs), req_headers, body, up.status,
                            up.reason or "", resp_headers, b"".join(chunks),
                            [len(c) for c in chunks] if streamed else None, (time.perf_counter() - t0) * 1000)
        await recorder.add(inter)
        return resp

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def recording_meta(upstream: str, **kw) -> dict:
    return provenance(upstream=upstream, **kw)


async def probe_upstream(upstream: str) -> dict:
    """Server kind and version as the upstream says them (best effort, for `meta`)."""
    root = upstream.rstrip("/")
    root = root[:-3] if root.endswith("/v1") else root
    info: dict = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
            async with s.get(f"{root}/v1/models") as r:
                models = await r.json(content_type=None)
                data = models.get("data") or []
                info["models"] = [m.get("id") for m in data]
                owner = (data[0].get("owned_by") if data else None) or ""
                info["server"] = {"vllm": "vllm", "nvidia": "dynamo"}.get(owner, owner or None)
            async with s.get(f"{root}/version") as r:
                if r.status == 200:
                    info["server_version"] = (await r.json(content_type=None)).get("version")
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError) as exc:
        info["probe_error"] = str(exc) or type(exc).__name__
    return {k: v for k, v in info.items() if v is not None}


def run_proxy(upstream: str, cassette: str, host: str = "127.0.0.1", port: int = 8080, mode: str = "once",
              scrubber: Scrubber | None = None, meta: dict | None = None, on_ready=None, on_record=None) -> Recorder:
    """Serve the recording proxy until SIGINT/SIGTERM; the cassette is flushed on the way out."""
    from ..serve import serve_forever

    info = asyncio.run(probe_upstream(upstream))
    recorder = Recorder(cassette, mode, scrubber, recording_meta(upstream, **info, **(meta or {})), on_record)
    serve_forever(create_proxy_app(upstream, recorder), host, port,
                  (lambda bound: on_ready(bound, info)) if on_ready else None)
    return recorder
