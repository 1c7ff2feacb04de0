"""Catalogue faults applied to live upstream answers (`harness record --fault`, `harness chaos`).

The same spec syntax as the fake servers (`NAME[=VALUE][@PROBABILITY][*TIMES]`) and the same
catalogue: HTTP faults answer in the upstream server's error shape without reaching it, `slow`
waits before forwarding, `reset` and `truncated_stream` cut the answer, `invalid_json` corrupts
it, and the body faults rewrite a JSON answer as the fake servers would. A team points its client
at its own cluster through this and sees its reaction to each fault, recorded and replayable.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from ..wire import mutate
from ..wire.errors import HTTP_FAULT_BODY
from ..wire.faults import (CATALOGUE, HTTP_FAULTS, TEMPLATE_FAULTS, Active, FaultPlan, FaultSpecError,
                           injected_response, invalid_json, parse_specs)

# Faults that need the fake engine's own state (its chat template, its tokenizer): not for live traffic.
NOT_LIVE = {*TEMPLATE_FAULTS, "echo_ids"}
FAULT_HEADER = "x-fake-fault"


class LiveFaults:
    def __init__(self, specs, seed: int = 0, server: str | None = None):
        rules = parse_specs(specs)
        bad = sorted({r.name for r in rules} & NOT_LIVE)
        if bad:
            raise FaultSpecError(f"fault(s) {', '.join(bad)} need the fake engine's template or tokenizer and cannot "
                                 f"be applied to a live server; live faults: "
                                 f"{', '.join(sorted(set(CATALOGUE) - NOT_LIVE))}")
        self.plan = FaultPlan(specs, seed)
        self.server = server if server in ("vllm", "dynamo") else "vllm"

    def draw(self, request: web.Request) -> Active:
        header = request.headers.get(FAULT_HEADER)
        active = self.plan.draw(header)
        bad = set(active.values) & NOT_LIVE
        if bad:
            raise FaultSpecError(f"fault(s) {', '.join(sorted(bad))} cannot be applied to a live server")
        return active

    async def before(self, active: Active) -> web.Response | None:
        """Wait (`slow`), or answer an HTTP fault in the upstream's own error shape."""
        if "slow" in active:
            await asyncio.sleep(active.value("slow", 1.0))
        return injected_response(active, self)

    def http_fault(self, status: int, message: str, headers: dict) -> web.Response:
        body = HTTP_FAULT_BODY[self.server](status, message)
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)

    @staticmethod
    def body(active: Active, body: bytes) -> bytes:
        """A whole (non-streamed) answer with the body faults applied."""
        if not active:
            return body
        if BODY_FAULTS & set(active.values):
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                body = orjson.dumps(mutate.apply(active, parsed))
        if "invalid_json" in active:
            body = invalid_json(body)
        return body


BODY_FAULTS = set(CATALOGUE) - set(HTTP_FAULTS) - NOT_LIVE - {"slow", "reset", "invalid_json", "truncated_stream"}
