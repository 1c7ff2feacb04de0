"""Dynamo's RL surfaces beside the frontend, each its own small app on its own port, started and stopped
with the frontend's app: the vLLM worker's system server (`DYN_SYSTEM_PORT`: `POST /engine/<route>`,
`/metrics`, `/health`) and the frontend's RL discovery listener (`DYN_RL_PORT`: `GET /v1/rl/workers`)."""

from __future__ import annotations

import time

from aiohttp import web

from harness.wire.control_plane import DYNAMO_WORDS, RL_DISCOVERY_PATH, RL_PROTOCOL_VERSION

from . import control_routes, metrics
from .base import STATE, ServerState, faults_of, json_ok
from .dynamo_control import DynamoEngineControl

HOST = "127.0.0.1"  # what the fake listens on and advertises (the real one advertises the host's address)
SIDE_RUNNERS = web.AppKey("rl_side_runners", list)


@web.middleware
async def _engine_404(request: web.Request, handler):
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return json_ok({"error": "Route not found", "message": DYNAMO_WORDS["route_not_found"].format(
            path=request.path)}, status=404)


def system_app(state: ServerState) -> web.Application:
    """The worker's system server: its engine routes, its engine's /metrics, /health."""
    app = web.Application(middlewares=[_engine_404, _control_faults])
    app[STATE] = state
    plane = state.control.plane
    control_routes.attach(app, plane, DynamoEngineControl(state.control, plane))
    if state.profile.control_plane:
        from harness.wire.metrics import METRIC_SETS

        if plane.name in METRIC_SETS:
            app.router.add_get("/metrics", metrics.metrics_route(plane.name))
    started = time.time()

    async def health(request):
        up = time.time() - started
        return json_ok({"status": "ready", "uptime": {"secs": int(up), "nanos": int(up % 1 * 1e9)},
                        "endpoints": {"get_perf_metrics": "ready", "generate": "ready", "rl": "ready",
                                      "clear_kv_blocks": "ready"}})

    app.router.add_get("/health", health)
    return app


@web.middleware
async def _control_faults(request: web.Request, handler):
    """Control-plane faults from start-up flags, the admin route or the x-fake-fault header, drawn here too."""
    from .base import FAULT_HEADER, FAULTS

    state = request.app[STATE]
    request[FAULTS] = state.plan.draw(request.headers.get(FAULT_HEADER), "control")
    return await handler(request)


@web.middleware
async def _empty_404(request: web.Request, handler):
    """The discovery listener answers any other path 404 with an empty body (recorded)."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return web.Response(status=404)


def rl_app(state: ServerState) -> web.Application:
    """The frontend's RL discovery listener: the workers, each with its system URL and engine routes."""
    app = web.Application(middlewares=[_empty_404, _control_faults])
    app[STATE] = state

    async def workers(request: web.Request) -> web.Response:
        c = state.control
        listed = [] if "worker_gone" in faults_of(request) else [{
            "namespace": "dynamo", "component": "backend", "endpoint": "rl", "instance_id": WORKER_ID,
            "transport": {"tcp": f"{HOST}:{c.system_port}/{WORKER_ID:016x}/dynamo/backend/rl"},
            "request_plane_url": "dyn://dynamo.backend.rl",
            "system_url": f"http://{HOST}:{c.system_port}", "model": state.engine.config.model,
            "routes": sorted(r.action for r in c.plane.routes if r.action not in ("load_lora", "unload_lora")),
            "world_size": 1}]
        return json_ok({"protocol_version": RL_PROTOCOL_VERSION, "namespace": "dynamo", "workers": listed})

    app.router.add_get(RL_DISCOVERY_PATH, workers)
    return app


WORKER_ID = 7587889019327385345


def attach_side_apps(app: web.Application, state: ServerState) -> None:
    """Start the system server and the RL listener with `app`, on the ports asked (0: free ones)."""
    from harness.serve import start_app

    async def start(_app):
        system_port, rl_port = state.control.ports
        runner, state.control.system_port = await start_app(system_app(state), HOST, system_port)
        runner2, state.control.rl_port = await start_app(rl_app(state), HOST, rl_port)
        _app[SIDE_RUNNERS] = [runner, runner2]

    async def stop(_app):
        for runner in _app.get(SIDE_RUNNERS, []):
            await runner.cleanup()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
