"""The OpenAI Python SDK with vLLM's and Dynamo's extra fields: token ids and logprobs of one turn."""

from __future__ import annotations

from .base import Adapter, ScenarioFailed, Target, Wire, check_tokens


class OpenAISDK(Adapter):
    name = "openai-sdk"
    package = "openai"


    def applies(self, target: Target) -> str | None:
        return None  # every server here speaks OpenAI chat completions

    async def run(self, target: Target) -> None:
        from openai import AsyncOpenAI

        wire = Wire()
        extra = ({"return_token_ids": True} if target.server == "vllm"
                 else {"nvext": {"extra_fields": ["engine_data", "completion_token_ids"]}})
        async with wire.client() as http:
            client = AsyncOpenAI(base_url=target.base_url, api_key="unused", http_client=http, max_retries=1)
            resp = await client.chat.completions.create(
                model=target.model, messages=[{"role": "user", "content": "Name a prime number."}], max_tokens=24,
                logprobs=True, seed=3, extra_body=extra)
        choice = resp.choices[0]
        if target.server == "vllm":
            ids = (choice.model_extra or {}).get("token_ids")
            lps = [c.logprob for c in choice.logprobs.content] if choice.logprobs and choice.logprobs.content else None
        else:
            nvext = (resp.model_extra or {}).get("nvext") or {}
            ed = nvext.get("engine_data") or {}
            ids = ed.get("completion_token_ids") or nvext.get("completion_token_ids")
            lps = ed.get("completion_logprobs")
            if lps is None and choice.logprobs and choice.logprobs.content:
                lps = [c.logprob for c in choice.logprobs.content]
        if ids is None:
            raise ScenarioFailed("the SDK's answer carries no token ids (extra fields lost?)")
        check_tokens(ids, lps, wire.last("/v1/chat/completions"))


ADAPTERS = [OpenAISDK()]
