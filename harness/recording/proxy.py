"""The recording reverse proxy: forwards every request, streams answers through live, records.

The event loop only forwards bytes. Each finished exchange is queued for the recorder
(recorder.py), whose writer cuts large blobs out, scrubs, serializes and appends batches to the
cassette; a kill -9 loses at most the exchanges still queued, and the file on disk is always a whole
cassette. With `LiveFaults` (chaos.py) catalogue faults are applied to the live answers.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from aiohttp import web

from multidict import CIMultiDict

from ..wire.faults import Active, FaultSpecError, reset_part
from ..wire.urls import root_of

from .chaos import FAULT_HEADER, LiveFaults
from .format import Interaction, provenance
from .recorder import Recorder
from .replay import answer
from .scrub import Scrubber

log = logging.getLogger("harness.recording")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}
SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
NO_FAULTS = Active()
ACTIVE = web.RequestKey("active_faults", Active) if hasattr(web, "RequestKey") else "active_faults"
RESPONSE_DROP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def create_proxy_app(upstream: str, recorder: Recorder | None, faults: LiveFaults | None = None,
                     tally=None) -> web.Application:
    """An aiohttp app forwarding to `upstream` (a server root, e.g. http://gpu-node:8000), recording
    into `recorder` (None: forward only), applying `faults` to live answers (None: none), counting
    what it forwards into `tally` (replay.Tally, None: nothing counted)."""
    upstream = root_of(upstream)

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
        resp = await forward(request)
        if tally is not None:
            tally.note(request.method, request.path, resp.status, sorted(request.get(ACTIVE, NO_FAULTS).values))
        return resp

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        arrived = time.time()
        if recorder is not None and recorder.replay is not None:
            hit = recorder.replay.lookup(request.method, request.path_qs, body)
            if hit is not None:
                return await answer(request, hit)
        try:
            active = request[ACTIVE] = faults.draw(request) if faults is not None else NO_FAULTS
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
            up = await _send(app[SESSION], request.method, uri, headers, body)
        except aiohttp.ClientError as exc:
            log.warning("%s %s: upstream %s unreachable: %s (answered 502, not recorded)", request.method,
                        request.path, upstream, str(exc) or type(exc).__name__)
            return web.json_response({"error": {"message": f"recording proxy: upstream {upstream} unreachable: {exc}",
                                                 "type": "ProxyError", "param": None, "code": 502}}, status=502)
        async with up:
            out_headers = [(k, v) for k, v in up.headers.items() if k.lower() not in RESPONSE_DROP]
            if "text/event-stream" in up.headers.get("content-type", ""):  # streamed through live, chunk by chunk
                resp = web.StreamResponse(status=up.status, reason=up.reason, headers=CIMultiDict(out_headers))
                head = _interaction(request, uri, headers, body, up.status, up.reason or "", list(up.headers.items()),
                                    b"", [], t0, arrived, active)
                number, head = recorder.stream_open(head) if recorder is not None else (None, head)
                chunks = await _stream(request, resp, up, "truncated_stream" in active,
                                       (lambda c: recorder.stream_chunk(number, c)) if recorder is not None else None)
                if recorder is not None:
                    await recorder.stream_close(number, head, chunks, (time.perf_counter() - t0) * 1000)
                return resp
            try:
                data = await up.read()
            except aiohttp.ClientError as exc:
                log.warning("exchange %s %s cut: %s (recorded as far as it went)", request.method, request.path, exc)
                data = b""
            if active:
                data = faults.body(active, data)
            # on disk (the journal) before a byte of the answer goes out
            await _record(request, uri, headers, body, up.status, up.reason or "", list(up.headers.items()), data, None,
                          t0, arrived, active)
            if "reset" in active:
                resp = web.StreamResponse(status=up.status, reason=up.reason, headers=CIMultiDict(out_headers))
                resp.content_length = len(data)
                await resp.prepare(request)
                await resp.write(reset_part(data))
                if request.transport is not None:
                    request.transport.abort()
                return resp
            return web.Response(status=up.status, reason=up.reason, body=data, headers=CIMultiDict(out_headers))

    async def _record(request, uri, req_headers, body, status, reason, resp_headers, data, sizes, t0, arrived, active):
        if recorder is not None:
            await recorder.add(_interaction(request, uri, req_headers, body, status, reason, resp_headers, data, sizes,
                                            t0, arrived, active))

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _send(session: aiohttp.ClientSession, method: str, uri: str, headers, body: bytes):
    """Send a request upstream. A kept-alive connection that the upstream closed after its last answer (uvicorn does
    after a 500, as real vLLM was seen doing) fails at once with a reset or a disconnect, before any answer: such a
    request never reached the server, so it goes once more, on a fresh connection. A refused connect is not retried."""
    try:
        return await session.request(method, uri, headers=headers, data=body, allow_redirects=False)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise
        return await session.request(method, uri, headers=headers, data=body, allow_redirects=False)


def _interaction(request, uri, req_headers, body, status, reason, resp_headers, data, sizes, t0, arrived,
                 active) -> Interaction:
    req: dict[str, list[str]] = {}
    for k, v in req_headers:
        req.setdefault(str(k), []).append(v)
    resp: dict[str, list[str]] = {}
    for k, v in resp_headers:
        if k.lower() not in ("connection", "keep-alive", "transfer-encoding"):
            resp.setdefault(str(k), []).append(v)
    return Interaction(request.method, uri, req, body, status, reason, resp, data, sizes,
                       (time.perf_counter() - t0) * 1000, arrived, faults=sorted(active.values) or None)


async def _stream(request, resp: web.StreamResponse, up, truncate: bool, journal) -> list[bytes]:
    """Forward an SSE answer chunk by chunk as it arrives, each one journaled (`journal(chunk)`)
    before it goes out; `truncate`: cut it after two events."""
    chunks: list[bytes] = []
    await resp.prepare(request)
    events = 0
    try:
        async for data in up.content.iter_any():
            cut = False
            if truncate:
                at = -1
                while events < 2:
                    at = data.find(b"\n\n", at + 1)
                    if at == -1:
                        break
                    events += 1
                if events >= 2:  # two whole events through, then the connection is cut
                    data, cut = data[:at + 2], True
            chunks.append(data)
            if journal is not None:
                journal(data)
            await resp.write(data)
            if cut:
                if request.transport is not None:
                    request.transport.abort()
                return chunks
        await resp.write_eof()
    except (aiohttp.ClientError, ConnectionResetError) as exc:
        log.warning("exchange %s %s cut: %s (recorded as far as it went)", request.method, request.path, exc)
    return chunks


def recording_meta(upstream: str, **kw) -> dict:
    return provenance(upstream=upstream, **kw)


async def probe_upstream(upstream: str) -> dict:
    """Server kind and version as the upstream says them (best effort, for `meta`)."""
    root = upstream.rstrip("/")
    root = root_of(root)
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
              faults=None, fault_seed: int = 0, writer: str = "process", reuse_port: bool = False,
              blob_threshold: int | None = None, wait_upstream: bool = False, on_wait=None,
              tally=None, rotate: tuple | None = None) -> Recorder | None:
    """Serve the recording proxy (or, with `cassette=None`, a fault-injecting forwarder) until
    SIGINT/SIGTERM; the cassette is flushed on the way out. The port is bound and the upstream
    reached before anything is written (BindError, Unreachable); `wait_upstream`: keep trying
    (`on_wait(why)` is called once) until the upstream answers."""
    from ..reach import Unreachable, checked_url, reach
    from ..serve import bind, serve_forever

    checked_url(upstream, "--upstream")
    sock = bind(host, port, reuse_port)
    try:
        while True:
            try:
                reach(upstream, "--upstream")
                break
            except Unreachable as exc:
                if not wait_upstream:
                    raise Unreachable(f"{exc}: start it first, or pass --wait-upstream to keep trying") from None
                if on_wait:
                    on_wait(str(exc))
                    on_wait = None
                time.sleep(1.0)
        info = asyncio.run(probe_upstream(upstream))
        live = LiveFaults(faults, fault_seed, info.get("server")) if faults else None
        recorder = None
        if cassette is not None:
            extra = {"faults": list(faults), "fault_seed": fault_seed} if faults else {}
            recorder = Recorder(cassette, mode, scrubber, recording_meta(upstream, **info, **extra, **(meta or {})),
                                on_record, writer=writer, rotate=rotate,
                                **({"blob_threshold": blob_threshold} if blob_threshold else {}))
    except BaseException:
        sock.close()
        raise
    serve_forever(create_proxy_app(upstream, recorder, live, tally), host, port,
                  (lambda bound: on_ready(bound, info)) if on_ready else None, reuse_port=reuse_port, sock=sock)
    return recorder
