"""This project's TITO client, on each of its three transports."""

from __future__ import annotations

from ..client import ClientConfig, TitoClient
from ..rollout import run_rollout
from .base import Adapter, ScenarioFailed, Target, Wire, check_stitched, check_tokens

ROUTES = {"vllm_generate": ("/v1/chat/completions", "/v1/chat/completions/tokens", "/inference/v1/generate"),
          "dynamo_chat": ("/v1/chat/completions",), "dynamo_generate": ("/v1/chat/completions", "/inference/v1/generate")}


class TitoAdapter(Adapter):
    def __init__(self, transport: str):
        self.transport = transport
        self.name = f"tito:{transport}"

    def applies(self, target: Target) -> str | None:
        wants = "vllm" if self.transport == "vllm_generate" else "dynamo"
        return None if target.server == wants else f"{self.transport} speaks {wants}, not {target.server}"

    async def run(self, target: Target) -> None:
        wire = Wire()
        config = ClientConfig(base_url=target.base_url, model=target.model, renderer_transport=self.transport,
                              backoff=0.05)
        async with wire.client() as http, TitoClient(config, http) as client:
            r = await client.chat([{"role": "user", "content": "Name a prime number."}], max_tokens=24, seed=3)
            check_tokens(r.completion_ids, r.completion_logprobs, wire.last(*ROUTES[self.transport]))
            if r.routed_experts_error:
                raise ScenarioFailed(f"routed experts not decoded: {r.routed_experts_error}")
            report = await run_rollout(config, turns=4, max_tokens=48, seed=5, client=client)
        modes = [t.mode for t in report.turns]
        if modes[1:] != ["tito"] * 3:
            bad = next(t for t in report.turns[1:] if t.mode != "tito")
            raise ScenarioFailed(f"turn {bad.index + 1} fell back to MITO: {bad.fallback_reason} ({bad.fallback_detail})")
        check_stitched([(t.prompt_ids, t.completion_ids) for t in report.turns])


ADAPTERS = [TitoAdapter(t) for t in ("vllm_generate", "dynamo_chat", "dynamo_generate")]
