"""`GET /metrics` (Prometheus text of the profile's families, filled from the capacity model at scrape) and
the fake's own control routes for the RL state: `GET /_fake/control` (policy, version, pause, flights),
`POST /_fake/control {"hold_after": N}` (every request stops after N tokens until `{"hold_after": null}`)."""

from __future__ import annotations

import orjson
from aiohttp import web

from harness.wire import metrics as wire_metrics

from .base import json_ok, state_of

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def render(state, families_name: str, model: str) -> str:
    families = wire_metrics.METRIC_SETS[families_name]
    snap = state.control.capacity.snapshot()
    base = {"model_name": model, "engine": "0", "model": model}
    return wire_metrics.render(families, base, snap, state.started)


def metrics_route(families_name: str):
    async def handle(request: web.Request) -> web.Response:
        state = state_of(request)
        text = render(state, families_name, state.engine.config.model)
        return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS})

    return handle


async def control_get(request: web.Request) -> web.Response:
    return json_ok(state_of(request).control.describe())


async def control_post(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
        hold = body["hold_after"]
        if hold is not None and (not isinstance(hold, int) or isinstance(hold, bool) or hold < 1):
            raise ValueError
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return json_ok({"error": 'want {"hold_after": N} (N >= 1 tokens) or {"hold_after": null}'}, status=400)
    control = state_of(request).control
    control.set_hold(hold)
    return json_ok(control.describe())


async def load(request: web.Request) -> web.Response:
    return json_ok({"server_load": state_of(request).control.capacity.running})


def add_routes(app: web.Application, families_name: str | None) -> None:
    if families_name:
        app.router.add_get("/metrics", metrics_route(families_name))
    if families_name in wire_metrics.LOAD_ROUTE:
        app.router.add_get("/load", load)
    app.router.add_get("/_fake/control", control_get)
    app.router.add_post("/_fake/control", control_post)
