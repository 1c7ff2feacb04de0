"""`renderers` (PyPI): renders messages locally, calls /inference/v1/generate, parses the answer."""

from __future__ import annotations

from .base import Adapter, ScenarioFailed, Target, Wire, check_tokens


class Renderers(Adapter):
    name = "renderers"
    package = "renderers"


    def applies(self, target: Target) -> str | None:
        return None if target.serves("generate") else "renderers needs /inference/v1/generate, which this server lacks"

    async def run(self, target: Target) -> None:
        from openai import AsyncOpenAI
        from renderers import DefaultRendererConfig, create_renderer
        from renderers.client import generate

        from ..tokenizer import load_tokenizer

        renderer = create_renderer(load_tokenizer(), DefaultRendererConfig())
        wire = Wire()
        async with wire.client() as http:
            client = AsyncOpenAI(base_url=target.base_url, api_key="unused", http_client=http, max_retries=1)
            out = await generate(client=client, renderer=renderer, model=target.model,
                                 messages=[{"role": "user", "content": "Name a prime number."}],
                                 sampling_params={"max_tokens": 24, "seed": 3})
        body = wire.last("/inference/v1/generate")
        check_tokens(out["completion_ids"], out["completion_logprobs"], body)
        sent = (body.get("choices") or [{}])[0].get("routed_experts")
        if target.moe and sent is not None and out.get("routed_experts") is None:
            raise ScenarioFailed("the server sent routed experts; renderers returned none")


ADAPTERS = [Renderers()]
