"""The recording reverse proxy: forwards every request, streams answers through live, records.

The event loop only forwards bytes. Each finished exchange is queued for a writer thread that
cuts large blobs out (blobs.py), scrubs, serializes and appends batches to the cassette with one
write and an fsync; a kill -9 loses at most the exchanges still queued, and the file on disk is
always a whole cassette.

Modes: `once` records into a new (or empty) cassette and refuses an existing one; `new_episodes`
answers requests the cassette already holds and records the rest; `all` records everything afresh.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web

from multidict import CIMultiDict

from fake_servers.faults import Active, FaultSpecError

from .blobs import DEFAULT_THRESHOLD, BlobStore, blob_dir
from .chaos import FAULT_HEADER, LiveFaults
from .format import Cassette, CassetteError, Interaction, append_durably, atomic_write, interactions_yaml, provenance
from .replay import ReplayIndex, answer
from .scrub import Scrubber

log = logging.getLogger("harness.recording")
MODES = ("once", "new_episodes", "all")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}
SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
NO_FAULTS = Active()
RESPONSE_DROP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class CassetteWriter:
    """Turns exchanges into what the file holds (blobs out to the blob folder, then scrubbed) and
    keeps the file in step: one append + fsync per batch, the whole file atomically on `flush`.
    Runs on the recorder's writer thread, or in its writer process."""

    def __init__(self, path: Path, scrubber: Scrubber, blob_threshold: int, cassette: Cassette):
        self.path, self.scrubber, self.cassette = path, scrubber, cassette
        self.blobs = BlobStore(blob_dir(path), blob_threshold)
        self.errors = 0

    def disk_form(self, i: Interaction, scrub: bool = True) -> Interaction:
        """Blobs out first (never scrubbed, and the scrubber then reads kilobytes, not megabytes)."""
        body, blobs = (i.response_body, []) if i.chunks is not None else self.blobs.take_out(i.response_body)
        if not scrub:
            return replace(i, response_body=body, blobs=blobs or None)
        s = self.scrubber
        clean = s.body(body)
        chunks = [len(clean)] if i.chunks is not None and clean != body else i.chunks  # a secret cut: sizes changed
        return replace(i, uri=s.url(i.uri), request_headers=s.headers(i.request_headers),
                       request_body=s.body(i.request_body), response_headers=s.headers(i.response_headers),
                       response_body=clean, chunks=chunks, blobs=blobs or None)

    def write(self, batch: list[Interaction]) -> list[Interaction]:
        try:
            disk = [self.disk_form(i) for i in batch]
            first = not self.cassette.interactions
            self.cassette.interactions.extend(disk)
            if first:  # `interactions: []` on disk cannot be appended to: write the file whole
                atomic_write(self.path, self.cassette.to_yaml().encode("utf-8"))
            else:
                append_durably(self.path, interactions_yaml(disk).encode("utf-8"))
            return disk
        except Exception as exc:  # never stop the writer: say it loudly, keep serving
            self.errors += 1
            log.error("could not write cassette %s: %s", self.path, exc)
            return []

    def flush(self) -> None:
        atomic_write(self.path, self.cassette.to_yaml().encode("utf-8"))


def _summary(i: Interaction) -> Interaction:
    """What `on_record` needs of an exchange, without its bodies (cheap to send between processes)."""
    return replace(i, request_body=b"", response_body=b"", request_headers={}, response_headers={})


def _writer_process(conn, path, scrubber, blob_threshold, cassette) -> None:
    """The writer process: batches in, acknowledgements out, until told to close."""
    writer = CassetteWriter(path, scrubber, blob_threshold, cassette)
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):  # the recorder died (kill -9): everything received is on disk already
            return
        if kind == "batch":
            disk = writer.write(payload)
            conn.send(("written", (len(payload), [_summary(i) for i in disk], writer.errors)))
        elif kind == "flush":
            writer.flush()
            conn.send(("flushed", len(writer.cassette.interactions)))
        else:
            conn.send(("closed", None))
            return


_FLUSH = object()


class Recorder:
    """Records exchanges into a cassette without holding up the proxy.

    `add` only queues an exchange. A writer (a thread, or with `writer="process"` a process of its
    own, off the proxy's GIL) takes what has queued and hands it to a `CassetteWriter`, which cuts
    large base64 blobs out, scrubs, serializes and appends the batch with one write and an fsync.
    The file is written whole (atomically) at start and on `flush`. A kill -9 loses at most the
    exchanges still queued; the file on disk is always a loadable cassette. The queue is bounded
    (`max_pending`): when the disk falls behind, `add` waits for room, and `backpressure_waits`
    counts (and a log line says) how often: memory stays bounded.
    """

    def __init__(self, path: str | Path, mode: str = "once", scrubber: Scrubber | None = None, meta: dict | None = None,
                 on_record=None, blob_threshold: int = DEFAULT_THRESHOLD, max_pending: int = 1024,
                 writer: str = "thread"):
        self.on_record = on_record  # called (off the event loop) with (count, exchange summary) once on disk
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be thread or process, got {writer!r}")
        self.path = Path(path)
        self.mode = mode
        scrubber = scrubber or Scrubber()
        existing = Cassette.load(self.path) if self.path.exists() else Cassette()
        if mode == "once" and existing.interactions:
            raise CassetteError(f"{self.path} already holds {len(existing.interactions)} interactions; "
                                f"mode 'once' never overwrites: use --mode new_episodes or all")
        self.replay = ReplayIndex([existing]) if mode == "new_episodes" else None
        self.writer = CassetteWriter(self.path, scrubber, blob_threshold, Cassette([], {**existing.meta, **(meta or {})}))
        if mode == "new_episodes":
            self.writer.cassette.interactions = [self.writer.disk_form(i, scrub=False) for i in existing.interactions]
        self.writer.flush()
        self.kept = len(self.writer.cassette.interactions)  # on disk before this recording
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._added = 0
        self._written = 0
        self._on_disk = self.kept
        self._done = threading.Condition()
        self._remote_errors = 0
        self.backpressure_waits = 0
        self._conn = self._proc = self._acks = None
        if writer == "process":
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_writer_process, name="cassette-writer", daemon=True,
                                     args=(child, self.path, scrubber, blob_threshold, self.writer.cassette))
            self._proc.start()
            child.close()
            self._acks = threading.Thread(target=self._ack_loop, name="cassette-acks", daemon=True)
            self._acks.start()
        self._thread = threading.Thread(target=self._write_loop, name="cassette-writer", daemon=True)
        self._thread.start()

    @property
    def recorded(self) -> int:
        return self._added

    @property
    def on_disk(self) -> int:
        """Interactions in the cassette file (kept from before, plus recorded and written)."""
        return self._on_disk

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def write_errors(self) -> int:
        return self.writer.errors + self._remote_errors

    async def add(self, interaction: Interaction) -> None:
        """Queue an exchange for the writer; waits only when the queue is full (back-pressure)."""
        self._added += 1
        try:
            self._queue.put_nowait(interaction)
        except queue.Full:
            self.backpressure_waits += 1
            if self.backpressure_waits in (1, 10, 100) or self.backpressure_waits % 1000 == 0:
                log.warning("cassette writer is behind: %d exchanges queued; handlers wait for room (%d times so far)",
                            self._queue.maxsize, self.backpressure_waits)
            await asyncio.to_thread(self._queue.put, interaction)

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or item is _FLUSH:
                self._send_control(item)
                if item is None:
                    return
                continue
            batch = [item]
            control = None
            while len(batch) < 256:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or nxt is _FLUSH:
                    control = nxt
                    break
                batch.append(nxt)
            if self._conn is not None:
                self._conn.send(("batch", batch))
            else:
                disk = self.writer.write(batch)
                self._acknowledge(len(batch), disk)
            if control is not None:
                self._send_control(control)
                if control is None:
                    return

    def _send_control(self, item) -> None:
        if self._conn is not None:
            self._conn.send(("flush", None) if item is _FLUSH else ("close", None))
            return
        if item is _FLUSH:
            self.writer.flush()
        with self._done:
            self._flushed = True
            self._done.notify_all()

    def _ack_loop(self) -> None:
        while True:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                return
            if kind == "written":
                n, disk, errors = payload
                self._remote_errors = errors
                self._acknowledge(n, disk)
            else:
                with self._done:
                    self._flushed = True
                    self._done.notify_all()
                if kind == "closed":
                    return

    def _acknowledge(self, n: int, disk: list[Interaction]) -> None:
        with self._done:
            start = self._written
            self._written += n
            self._on_disk += len(disk)
            self._done.notify_all()
        if self.on_record:
            for k, i in enumerate(disk, 1):
                self.on_record(start + k, i)

    def wait_written(self, timeout: float | None = 30) -> bool:
        """Block until every exchange added so far is on disk."""
        target = self._added
        with self._done:
            return self._done.wait_for(lambda: self._written >= target, timeout)

    def _control(self, item, timeout: float | None) -> None:
        with self._done:
            self._flushed = False
        self._queue.put(item)
        with self._done:
            self._done.wait_for(lambda: self._flushed, timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Write whatever is queued, then the whole cassette, atomically (on shutdown)."""
        if self._thread.is_alive():
            self._control(_FLUSH, timeout)

    def close(self, timeout: float | None = 60) -> None:
        """Flush, then stop the writer (and its process)."""
        if not self._thread.is_alive():
            return
        self.flush(timeout)
        self._control(None, timeout)
        self._thread.join(timeout)
        if self._proc is not None:
            self._proc.join(timeout)


def create_proxy_app(upstream: str, recorder: Recorder | None, faults: LiveFaults | None = None) -> web.Application:
    """An aiohttp app forwarding to `upstream` (a server root, e.g. http://gpu-node:8000), recording
    into `recorder` (None: forward only), applying `faults` to live answers (None: none)."""
    upstream = upstream.rstrip("/")
    if upstream.endswith("/v1"):
        upstream = upstream[:-3]

    async def on_startup(app):
        app[SESSION] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, skip_auto_headers=("User-Agent",))

    async def on_cleanup(app):
        await app[SESSION].close()
        if recorder is not None:
            await asyncio.to_thread(recorder.close)
            log.info("cassette %s: %d interactions", recorder.path, recorder.on_disk)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        arrived = time.time()
        if recorder is not None and recorder.replay is not None:
            hit = recorder.replay.lookup(request.method, request.path_qs, body)
            if hit is not None:
                return await answer(request, hit)
        try:
            active = faults.draw(request) if faults is not None else NO_FAULTS
        except FaultSpecError as exc:
            return web.json_response({"error": {"message": str(exc), "type": "BadRequestError", "param": FAULT_HEADER,
                                                "code": 400}}, status=400)
        headers = [(k, v) for k, v in request.headers.items()  # the fault header is ours when we inject faults
                   if k.lower() not in HOP_BY_HOP and not (faults is not None and k.lower() == FAULT_HEADER)]
        uri = upstream + request.path_qs
        t0 = time.perf_counter()
        injected = await faults.before(active) if active else None
        if injected is not None:  # an HTTP fault: the upstream is never asked
            await _record(request, uri, headers, body, injected.status, injected.reason, list(injected.headers.items()),
                          injected.body, None, t0, arrived, active)
            return injected
        try:
            up = await app[SESSION].request(request.method, uri, headers=headers, data=body, allow_redirects=False)
        except aiohttp.ClientError as exc:
            return web.json_response({"error": {"message": f"recording proxy: upstream {upstream} unreachable: {exc}",
                                                 "type": "ProxyError", "param": None, "code": 502}}, status=502)
        async with up:
            out_headers = [(k, v) for k, v in up.headers.items() if k.lower() not in RESPONSE_DROP]
            if "text/event-stream" in up.headers.get("content-type", ""):  # streamed through live, chunk by chunk
                resp = web.StreamResponse(status=up.status, reason=up.reason, headers=CIMultiDict(out_headers))
                chunks = await _stream(request, resp, up, "truncated_stream" in active)
                data, sizes = b"".join(chunks), [len(c) for c in chunks]
            else:
                try:
                    data = await up.read()
                except aiohttp.ClientError as exc:
                    log.warning("exchange %s %s cut: %s (recorded as far as it went)", request.method, request.path, exc)
                    data = b""
                if active:
                    data = faults.body(active, data)
                sizes = None
                if "reset" in active:
                    resp = web.StreamResponse(status=up.status, reason=up.reason, headers=CIMultiDict(out_headers))
                    resp.content_length = len(data)
                    await resp.prepare(request)
                    await resp.write(data[: len(data) // 2])
                    if request.transport is not None:
                        request.transport.abort()
                else:
                    resp = web.Response(status=up.status, reason=up.reason, body=data, headers=CIMultiDict(out_headers))
        await _record(request, uri, headers, body, up.status, up.reason or "", list(up.headers.items()), data, sizes,
                      t0, arrived, active)
        return resp

    async def _record(request, uri, req_headers, body, status, reason, resp_headers, data, sizes, t0, arrived, active):
        if recorder is None:
            return
        req: dict[str, list[str]] = {}
        for k, v in req_headers:
            req.setdefault(str(k), []).append(v)
        resp: dict[str, list[str]] = {}
        for k, v in resp_headers:
            if k.lower() not in ("connection", "keep-alive", "transfer-encoding"):
                resp.setdefault(str(k), []).append(v)
        await recorder.add(Interaction(request.method, uri, req, body, status, reason, resp, data, sizes,
                                       (time.perf_counter() - t0) * 1000, arrived,
                                       faults=sorted(active.values) or None))

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _stream(request, resp: web.StreamResponse, up, truncate: bool) -> list[bytes]:
    """Forward an SSE answer chunk by chunk as it arrives; `truncate`: cut it after two events."""
    chunks: list[bytes] = []
    await resp.prepare(request)
    events = 0
    try:
        async for data in up.content.iter_any():
            if truncate:
                at = -1
                while events < 2:
                    at = data.find(b"\n\n", at + 1)
                    if at == -1:
                        break
                    events += 1
                if events >= 2:  # two whole events through, then the connection is cut
                    data = data[:at + 2]
                    chunks.append(data)
                    await resp.write(data)
                    if request.transport is not None:
                        request.transport.abort()
                    return chunks
            chunks.append(data)
            await resp.write(data)
        await resp.write_eof()
    except (aiohttp.ClientError, ConnectionResetError) as exc:
        log.warning("exchange %s %s cut: %s (recorded as far as it went)", request.method, request.path, exc)
    return chunks


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


def run_proxy(upstream: str, cassette: str | None, host: str = "127.0.0.1", port: int = 8080, mode: str = "once",
              scrubber: Scrubber | None = None, meta: dict | None = None, on_ready=None, on_record=None,
              faults=None, fault_seed: int = 0, writer: str = "process", reuse_port: bool = False) -> Recorder | None:
    """Serve the recording proxy (or, with `cassette=None`, a fault-injecting forwarder) until
    SIGINT/SIGTERM; the cassette is flushed on the way out."""
    from ..serve import serve_forever

    info = asyncio.run(probe_upstream(upstream))
    live = LiveFaults(faults, fault_seed, info.get("server")) if faults else None
    recorder = None
    if cassette is not None:
        extra = {"faults": list(faults), "fault_seed": fault_seed} if faults else {}
        recorder = Recorder(cassette, mode, scrubber, recording_meta(upstream, **info, **extra, **(meta or {})),
                            on_record, writer=writer)
    serve_forever(create_proxy_app(upstream, recorder, live), host, port,
                  (lambda bound: on_ready(bound, info)) if on_ready else None, reuse_port=reuse_port)
    return recorder
