"""What both fakes share: fault drawing, admin routes, JSON/SSE sending, and the app frame."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import orjson
from aiohttp import web

from harness.wire import sse
from harness.wire.faults import (CATALOGUE, Active, FaultPlan, FaultSpecError, injected_response, invalid_json,
                                 reset_part)

from .engine import FakeEngine

log = logging.getLogger("fake_servers")
FAULT_HEADER = "x-fake-fault"

ErrorFn = Callable[..., web.Response]


class Answered(Exception):
    """Raised deep in a handler when the answer is already decided (a paused engine refusing new work)."""

    def __init__(self, response: web.Response):
        self.response = response


class BadBody(Exception):
    """The request body is not a JSON object; `reason` in the server's own words is added later."""

    def __init__(self, raw: bytes, exc: Exception | None, value=None):
        self.raw, self.exc, self.value = raw, exc, value


@dataclass
class Received:
    """One request the fake received, for tests to assert on (`RunningServer.received`)."""

    method: str
    path: str
    headers: dict
    body: bytes
    status: int | None = None  # what the fake answered (None: the connection was cut)
    faults: list = field(default_factory=list)  # catalogue faults applied to it

    def json(self):
        import json

        return json.loads(self.body) if self.body else None


@dataclass
class ServerState:
    kind: str  # "vllm" | "dynamo"
    engine: FakeEngine
    plan: FaultPlan = field(default_factory=FaultPlan)
    template_faults: dict = field(default_factory=dict)  # fault name -> chat template text
    requests: int = 0
    received: deque = field(default_factory=lambda: deque(maxlen=1000))  # the last requests (Received)
    started: float = field(default_factory=time.time)
    profile: object = None  # the harness.wire.profiles.Profile being served
    control_paths: set = field(default_factory=set)  # the RL control plane's paths (their faults are drawn apart)
    control: object = None  # fake_servers.control.Control when the control plane is on

    def __repr__(self) -> str:
        """One line: what a test printing the state wants (the templates and the request log stay out)."""
        from harness.wire.profiles import profile_label

        label = profile_label(self.profile) if self.profile is not None else self.kind
        faults = (self.plan.describe() or {}).get("faults") if self.plan is not None else None
        return (f"ServerState({label}, {self.requests} requests, {len(self.received)} kept, faults "
                f"{', '.join(f.get('name', '?') if isinstance(f, dict) else str(f) for f in faults or []) or 'none'}{', control plane on' if self.control is not None else ''})")


@dataclass
class ErrorStyle:
    """How one server words the errors the shared frame produces."""

    route_not_found: Callable[[web.Request], web.Response]
    method_not_allowed: Callable[[web.Request], web.Response]
    http_fault: Callable[[int, str, dict], web.Response]
    bad_fault_header: Callable[[str], web.Response]
    internal: Callable[[str], web.Response]


STATE = web.AppKey("state", ServerState)
FAULTS = web.RequestKey("faults", Active) if hasattr(web, "RequestKey") else "faults"


def state_of(request: web.Request) -> ServerState:
    return request.app[STATE]


NO_FAULTS = Active()


def faults_of(request: web.Request) -> Active:
    return request.get(FAULTS) or NO_FAULTS


async def read_json(request: web.Request, lossy: bool = False) -> dict:
    """The body as a JSON object (`lossy`: invalid UTF-8 replaced, as Dynamo's frontend reads it)."""
    raw = await request.read()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            if not lossy:
                raise
            value = orjson.loads(raw.decode("utf-8", "replace"))
        except orjson.JSONDecodeError:
            raise BadBody(raw, exc) from None
    if not isinstance(value, dict):
        raise BadBody(raw, None, value)
    return value


class Checked:
    """What the checks of a request body found, for bodies seen before (the last `size`, none past `max_bytes`):
    the checks are pure functions of the body's bytes, and a group of rollouts sends one prompt's body many
    times over, so an identical body skips them. Values are shared: callers copy before changing one."""

    def __init__(self, size: int = 1024, max_bytes: int = 64 * 1024):
        self._seen: OrderedDict = OrderedDict()
        self.size, self.max_bytes = size, max_bytes

    def get(self, key):
        hit = self._seen.get(key)
        if hit is not None:
            self._seen.move_to_end(key)
        return hit

    def put(self, key, value, size: int) -> None:
        if size <= self.max_bytes:
            self._seen[key] = value
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)


BIG_BODY = 256 * 1024  # a body past this is rendered and tokenized off the event loop


async def off_loop(request: web.Request, fn, *args):
    """`fn(*args)`, on a worker thread when the request's body is big (its template and tokenizer take seconds
    on megabytes), so other requests, /health among them, are answered meanwhile; inline otherwise."""
    if (request.content_length or 0) <= BIG_BODY:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def json_ok(body, status: int = 200) -> web.Response:
    """Compact JSON, as both real servers write it."""
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


IDS = random.Random()  # (seeded from the OS once, not a system call per answer)


def new_id(prefix: str, dashed: bool = False) -> str:
    if dashed:
        return f"{prefix}{uuid.UUID(int=IDS.getrandbits(128), version=4)}"
    return f"{prefix}{IDS.getrandbits(64):016x}"


async def send_json(request: web.Request, body: dict, status: int = 200) -> web.StreamResponse:
    """Send `body` as JSON, applying the transport faults `invalid_json` and `reset`."""
    active = faults_of(request)
    data = orjson.dumps(body)
    if "invalid_json" in active:
        data = invalid_json(data)
    if "reset" in active:
        resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json",
                                                          "Content-Length": str(len(data))})
        await resp.prepare(request)
        await resp.write(reset_part(data))
        if request.transport is not None:
            request.transport.abort()
        return resp
    return web.Response(status=status, body=data, content_type="application/json")


class SSE:
    """A Server-Sent Events answer: `data: {json}\\n\\n` per chunk, `data: [DONE]` at the end."""

    def __init__(self, request: web.Request, per_chunk_delay: float = 0.0):
        self.request = request
        self.delay = per_chunk_delay
        self.resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                "Cache-Control": "no-cache"})
        self.sent = 0
        self.truncate_after = 2 if "truncated_stream" in faults_of(request) else None
        self.cut = False

    async def __aenter__(self):
        await self.resp.prepare(self.request)
        return self

    async def send(self, chunk: dict) -> None:
        if self.cut:
            return
        if self.truncate_after is not None and self.sent >= self.truncate_after:
            self.cut = True
            if self.request.transport is not None:
                self.request.transport.abort()
            return
        if self.delay and self.sent:
            await asyncio.sleep(self.delay)
        await self.resp.write(sse.frame(chunk))
        self.sent += 1

    async def __aexit__(self, exc_type, exc, tb):
        if not self.cut and exc_type is None:
            await self.resp.write(sse.DONE)
            await self.resp.write_eof()
        return False


def _fault_middleware(style: ErrorStyle):
    @web.middleware
    async def middleware(request: web.Request, handler):
        state = state_of(request)
        if request.path.startswith("/_fake/"):
            return await handler(request)
        state.requests += 1
        seen = Received(request.method, request.path_qs, dict(request.headers), await request.read())
        state.received.append(seen)
        try:
            active = state.plan.draw(request.headers.get(FAULT_HEADER),
                                     "control" if request.path in state.control_paths else "data")
        except FaultSpecError as exc:
            seen.status = 400
            return style.bad_fault_header(str(exc))
        seen.faults = sorted(active.values)
        response = await _answer(request, handler, style, active)
        seen.status = response.status if response is not None else None
        return response

    async def _answer(request, handler, style, active):
        request[FAULTS] = active
        if active:
            log.debug("faults for %s %s: %s", request.method, request.path, sorted(active.values))
        if "slow" in active:
            await asyncio.sleep(active.value("slow", 1.0))
        injected = injected_response(active, style)
        if injected is not None:
            return injected
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return style.route_not_found(request)
        except web.HTTPMethodNotAllowed:
            return style.method_not_allowed(request)
        except Answered as exc:
            return exc.response
        except ConnectionResetError:  # the client went away (timeouts, the reset fault): nobody to answer
            return web.Response(status=499)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the fake: say so in the server's shape, never a trace
            log.exception("fake server error on %s %s", request.method, request.path)
            return style.internal(f"{type(exc).__name__}: {exc}")

    return middleware


async def _admin_get(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_ok({**state.plan.describe(), "requests": state.requests, "catalogue": sorted(CATALOGUE),
                    "profile": state.profile.describe() if state.profile is not None else None})


async def _admin_post(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
        specs = body.get("faults", [])
        seed = body.get("seed")
        state_of(request).plan.set(specs, seed)
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return json_ok({"error": 'want {"faults": ["NAME[=V][@P][*N]", ...], "seed": N}'}, status=400)
    except FaultSpecError as exc:
        return json_ok({"error": str(exc)}, status=400)
    return json_ok(state_of(request).plan.describe())


async def _admin_delete(request: web.Request) -> web.Response:
    state_of(request).plan.set([])
    return json_ok(state_of(request).plan.describe())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(state: ServerState, style: ErrorStyle, routes: list[tuple[str, str, Handler]]) -> web.Application:
    app = web.Application(middlewares=[_fault_middleware(style)], client_max_size=256 * 1024 * 1024)
    app[STATE] = state
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    app.router.add_get("/_fake/faults", _admin_get)
    app.router.add_post("/_fake/faults", _admin_post)
    app.router.add_delete("/_fake/faults", _admin_delete)
    return app
